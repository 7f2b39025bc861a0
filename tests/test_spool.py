"""The intake spool over real sockets, a real redis-server started and stopped by the test, and real
files: 202 while Redis is down, replay in order with the answered ids when it returns, duplicates folded,
a restart or a crash mid-replay neither losing nor doubling anything, torn and corrupt lines handled."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from rq import Queue

from broker.app import create_app
from broker.settings import Settings
from broker.spool import Journal, SpoolEntry, SpoolLocked
from broker.spool_drain import Intake, open_journal
from handlers import gitea
from tests import payloads
from tests.burst import delivery, gitea_delivery, post_all, wait_drained
from tests.conftest import GITEA_SECRET, HARBOR_AUTH, admin_headers, intake_store
from tests.redis_server import RedisServer
from tests.signing import gitea_headers, harbor_headers

# own_redis, own_settings: a redis-server of the test's own, to stop and restart.
pytest_plugins = ("tests.redis_fixtures",)


def spool_dir(settings: Settings) -> Path:
    return settings.data_dir / "spool"


def segments(settings: Settings) -> list[Path]:
    return sorted(spool_dir(settings).glob("segment-*.jsonl"))


def queued_event_ids(server: RedisServer) -> list[str]:
    """The event ids of the queued jobs, in queue order (job ids are event-<id>-<suffix>)."""
    connection = server.client()
    try:
        return [job_id.split("-")[1] for job_id in Queue("broker", connection=connection).job_ids]
    finally:
        connection.close()


async def test_spooled_while_redis_is_down_then_replayed_in_order_with_the_same_ids(
    aiohttp_client, own_settings, own_redis
):
    client = await aiohttp_client(create_app(own_settings))
    answers = await post_all(client.post, [delivery(i) for i in range(9)], concurrency=1)
    resources = [
        payloads.harbor_resource(tag="2.0.0", digest="sha256:" + "b" * 64),
        payloads.harbor_resource(tag="latest", digest="sha256:" + "b" * 64),
    ]
    body = payloads.harbor_push(resources=resources)
    multi = await client.post("/hooks/harbor", data=body, headers=harbor_headers(HARBOR_AUTH))

    assert [a.status for a in answers] == [202] * 9 and multi.status == 202
    assert all(a.body["spooled"] is True and a.body["status"] == "queued" for a in answers)
    multi_answer = await multi.json()
    assert len(multi_answer["event_ids"]) == 2 and multi_answer["spooled"] is True
    ready = await client.get("/readyz")
    assert ready.status == 200, "degraded but still taking webhooks"
    readiness = await ready.json()
    assert readiness["status"] == "degraded" and readiness["spool"]["pending_bytes"] > 0
    assert readiness["redis"].startswith("unavailable: ConnectionError")
    assert len(segments(own_settings)) == 1

    await asyncio.to_thread(own_redis.start)
    await wait_drained(client)
    expected = [i for a in answers for i in a.event_ids] + multi_answer["event_ids"]
    assert queued_event_ids(own_redis) == expected, "replayed in the order they were spooled"
    assert segments(own_settings) == [], "a replayed segment is deleted"
    record = await (
        await client.get(f"/api/v1/events/{multi_answer['event_ids'][1]}", headers=admin_headers())
    ).json()
    assert record["tag"] == "latest" and record["status"] == "queued"


async def test_a_delivery_spooled_twice_becomes_one_event(aiohttp_client, own_settings, own_redis):
    client = await aiohttp_client(create_app(own_settings))
    same = gitea_delivery(7)
    answers = await post_all(client.post, [same, same], concurrency=1)
    assert [a.status for a in answers] == [202, 202]
    first, second = (a.body["event_id"] for a in answers)

    await asyncio.to_thread(own_redis.start)
    await wait_drained(client)
    assert queued_event_ids(own_redis) == [first]
    gone = await client.get(f"/api/v1/events/{second}", headers=admin_headers())
    assert gone.status == 404


async def test_spool_left_by_a_stopped_process_is_replayed_at_start_up(
    aiohttp_client, own_settings, own_redis
):
    first = await aiohttp_client(create_app(own_settings))
    answers = await post_all(first.post, [delivery(i) for i in range(6)], concurrency=3)
    await first.close()
    assert len(segments(own_settings)) == 1

    await asyncio.to_thread(own_redis.start)
    second = await aiohttp_client(create_app(own_settings))
    await wait_drained(second)
    assert sorted(queued_event_ids(own_redis)) == sorted(i for a in answers for i in a.event_ids)


async def test_a_crash_mid_replay_neither_loses_nor_doubles(
    aiohttp_client, own_settings, own_redis, tmp_path
):
    first = await aiohttp_client(create_app(own_settings))
    answers = await post_all(first.post, [delivery(i) for i in range(8)], concurrency=1)
    [segment] = segments(own_settings)
    kept = tmp_path / "kept.jsonl"
    shutil.copy(segment, kept)  # the fsync'd journal as it stood before any replay
    await asyncio.to_thread(own_redis.start)
    await wait_drained(first)
    await first.close()
    replayed = queued_event_ids(own_redis)
    assert sorted(replayed) == sorted(i for a in answers for i in a.event_ids)

    # A crash after replaying everything but before recording more than three lines' offset and before
    # deleting the segment: at restart the spool still holds it.
    shutil.copy(kept, segment)
    third_line_end = sum(len(line) for line in kept.read_bytes().splitlines(keepends=True)[:3])
    segment.with_suffix(".offset").write_text(str(third_line_end))
    second = await aiohttp_client(create_app(own_settings))
    await wait_drained(second)
    assert queued_event_ids(own_redis) == replayed, "nothing queued twice"
    assert segments(own_settings) == []


async def test_a_hung_redis_costs_one_deadline_then_webhooks_go_straight_to_the_spool(
    aiohttp_client, settings
):
    # A "Redis" that accepts connections and never answers (a blackholed or wedged server).
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    def intake_redis_failures() -> float:
        return REGISTRY.get_sample_value("broker_redis_errors_total", {"where": "intake"}) or 0.0

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "redis_timeout_s": 0.2,
            "redis_probe_interval_s": 60,
        }
    )
    try:
        client = await aiohttp_client(create_app(hung))
        failures = intake_redis_failures()
        first = gitea_delivery(0)
        started = time.monotonic()
        resp = await client.post("/hooks/gitea", data=first.body, headers=first.headers)
        # Bounded by the deadline, not by a blocking call (rq's INFO used to freeze the loop for 5 s).
        assert time.monotonic() - started < 4
        assert resp.status == 202 and (await resp.json())["spooled"] is True
        assert intake_redis_failures() == failures + 1
        for index in (1, 2):
            item = gitea_delivery(index)
            resp = await client.post("/hooks/gitea", data=item.body, headers=item.headers)
            assert resp.status == 202 and (await resp.json())["spooled"] is True
        assert intake_redis_failures() == failures + 1, "later webhooks did not wait on the hung Redis"
        assert (await (await client.get("/readyz")).json())["status"] == "degraded"
    finally:
        server.close()


def spool_entry(index: int) -> SpoolEntry:
    body = payloads.gitea_push(after=payloads.fake_sha(f"spool-{index}"))
    incoming = gitea.parse(gitea_headers(body, GITEA_SECRET), body)
    return SpoolEntry(
        received_at=datetime.now(UTC), event_ids=[f"01J00000000000000000000G{index}0"], events=incoming
    )


async def test_torn_tail_skipped_and_corrupt_line_set_aside(settings, own_redis, tmp_path):
    await asyncio.to_thread(own_redis.start)
    good = [spool_entry(n) for n in range(2)]
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "segment-000000000001.jsonl").write_bytes(
        good[0].line() + b'{"not": "an entry"}\n' + good[1].line() + b'{"received_at": "20'
    )
    journal = Journal(directory, max_bytes=10**6, segment_bytes=10**6)
    journal.open()
    own = settings.model_copy(update={"redis_url": own_redis.url})
    connection = own_redis.client()
    store = intake_store(own, connection)
    try:
        replayed = await Intake(store, journal, own).drain()
    finally:
        journal.close()
        await store.aclose()
        connection.close()
    assert replayed == 3, "two entries replayed, one set aside, the torn tail skipped"
    assert queued_event_ids(own_redis) == [good[0].event_ids[0], good[1].event_ids[0]]
    assert (directory / "rejected.jsonl").read_bytes() == b'{"not": "an entry"}\n'
    assert list(directory.glob("segment-*")) == []


def test_a_spool_line_from_before_payloads_were_kept_as_text_still_reads():
    entry = spool_entry(7)
    legacy = json.loads(entry.line())
    for item in legacy["events"]:
        item["payload"] = json.loads(item.pop("payload_json"))
    read = SpoolEntry.model_validate_json(json.dumps(legacy))
    assert read.event_ids == entry.event_ids
    [old], [new] = read.events, entry.events
    assert json.loads(old.payload_json) == json.loads(new.payload_json)
    assert old.model_dump(exclude={"payload_json"}) == new.model_dump(exclude={"payload_json"})


def test_one_process_per_spool_directory(settings, tmp_path):
    first = Journal(tmp_path / "spool", max_bytes=1000, segment_bytes=1000)
    first.open()
    try:
        with pytest.raises(SpoolLocked):
            Journal(tmp_path / "spool", max_bytes=1000, segment_bytes=1000).open()
        # A second web process on the same directory runs without a spool (503 while Redis is down).
        assert open_journal(settings.model_copy(update={"data_dir": tmp_path})) is None
    finally:
        first.close()
    reopened = open_journal(settings.model_copy(update={"data_dir": tmp_path}))
    assert reopened is not None
    reopened.close()

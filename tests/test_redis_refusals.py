"""Redis up but refusing: what it refuses for one delivery (here a key of the wrong type, as a hand-edited
or foreign key would be) fails that delivery alone, with a 503, nothing spooled and nothing of it left in
Redis, while the deliveries sharing its script call are stored once each; when Redis refuses every write
(out of memory), deliveries wait in the spool as they do while it is unreachable. Real Redis servers
throughout: the shared one, and throwaway ones of both the Debian server (Redis 7) and the embedded one
(Redis 6, whose scripts report a refused write differently)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aredis
from rq import Queue

from broker.app import create_app
from broker.settings import Settings
from broker.spool import Journal, SpoolEntry
from broker.spool_drain import Intake
from broker.store import CHANGES_STREAM, assign_event_ids, event_key, index_key
from broker.store_accept import AcceptBatcher, CommandRecorder, redis_unavailable
from handlers import gitea
from handlers.models import Incoming
from tests import payloads
from tests.burst import gitea_delivery, wait_drained
from tests.conftest import GITEA_SECRET, accept_together, admin_headers, intake_store
from tests.redis_server import RedisServer, embedded_redis_binary, redis_server_binary
from tests.signing import gitea_headers

POISONED_REPO = "team-demo/poisoned"


def push(index: int, repo: str = "hello") -> list[Incoming]:
    body = payloads.gitea_push(repo=repo, after=payloads.fake_sha(f"refusal-{index}"))
    return gitea.parse(gitea_headers(body, GITEA_SECRET, delivery=f"refusal-{index}"), body)


def poison(connection: redis.Redis) -> None:
    """The poisoned repository's index is a string: every ZADD to it is refused (WRONGTYPE)."""
    connection.set(index_key("repo", POISONED_REPO), "not a sorted set")


def queued_event_ids(connection: redis.Redis) -> list[str]:
    return [job_id.split("-")[1] for job_id in Queue("broker", connection=connection).job_ids]


@pytest.fixture
async def store(settings: Settings, sync_redis: redis.Redis):
    store = intake_store(settings, sync_redis)
    yield store
    await store.aclose()


def traces(connection: redis.Redis, event_id: str) -> list[str]:
    """Every place the intake writes an event to that holds `event_id`."""
    found = []
    if connection.exists(event_key(event_id)):
        found.append("record")
    for key in connection.scan_iter("broker:events*", _type="zset"):
        if connection.zscore(key, event_id) is not None:
            found.append(key.decode())
    if any(event_id.encode() in fields[b"event"] for _, fields in connection.xrange(CHANGES_STREAM)):
        found.append("change entry")
    if any(connection.get(key) == event_id.encode() for key in connection.scan_iter("broker:dedup:*")):
        found.append("dedup key")
    if list(connection.scan_iter(f"rq:job:event-{event_id}-*")):
        found.append("job")
    if any(f"-{event_id}-" in job for job in Queue("broker", connection=connection).job_ids):
        found.append("queue entry")
    return found


@pytest.mark.parametrize(
    "binary", [redis_server_binary(), embedded_redis_binary()], ids=["redis-server", "embedded"]
)
async def test_a_refused_delivery_fails_alone_leaving_nothing_and_its_call_mates_are_stored_once(
    settings, tmp_path, binary
):
    server = RedisServer(tmp_path / "redis", binary=binary).start()
    connection = server.client()
    store = intake_store(settings.model_copy(update={"redis_url": server.url}), connection)
    try:
        poison(connection)
        # The refused one in the middle: Redis refuses its repo index after its record's other writes.
        deliveries = [push(0), push(1, repo="poisoned"), push(2)]
        assert deliveries[1][0].repo == POISONED_REPO
        (first, refused, third), ids = await accept_together(store, deliveries)

        assert isinstance(refused, redis.ResponseError) and "WRONGTYPE" in str(refused)
        assert not redis_unavailable(refused)
        assert traces(connection, ids[1][0]) == [], "its writes before the refusal are undone"
        for outcome, event_ids in ((first, ids[0]), (third, ids[2])):
            assert not isinstance(outcome, BaseException)
            assert outcome.duplicate_of is None and outcome.event_ids == event_ids
            stored = set(traces(connection, event_ids[0]))
            assert {"record", "broker:events", "change entry", "dedup key", "job", "queue entry"} <= stored
        assert queued_event_ids(connection) == [ids[0][0], ids[2][0]], "each job once, none for the refused"

        # Once the key is mended, the sender's retry is stored: nothing it left is taken for a copy.
        connection.delete(index_key("repo", POISONED_REPO))
        [retried], [retried_ids] = await accept_together(store, [deliveries[1]])
        assert not isinstance(retried, BaseException) and retried.duplicate_of is None
        assert "broker:events:repo:" + POISONED_REPO in traces(connection, retried_ids[0])
    finally:
        await store.aclose()
        connection.close()
        server.kill()


async def beside_a_fine_delivery(settings: Settings, writes: CommandRecorder) -> tuple[object, object]:
    """The outcomes of `writes` and of a delivery with nothing wrong, both in one script call."""
    fine = CommandRecorder()
    fine.execute_command("SET", "undo:fine", "stored")
    batcher = AcceptBatcher(aredis.Redis.from_url(settings.redis_url), timeout_s=5)
    try:
        mine, theirs = await asyncio.gather(
            batcher.submit(["undo:dedup"], "undo:string", "mine", writes),
            batcher.submit(["undo:dedup:fine"], "undo:fine", "fine", fine),
            return_exceptions=True,
        )
    finally:
        await batcher.aclose()
    return mine, theirs


async def test_every_kind_of_write_a_refused_delivery_made_is_undone_exactly(settings, sync_redis):
    """The undo, command by command, on keys that hold other entries too: a refusal after a SET, a ZADD,
    an XADD, an HSET and an RPUSH (here a Lua error: too many arguments to unpack) removes just those."""
    sync_redis.zadd("undo:zset", {"other": 0})
    sync_redis.rpush("undo:list", "other", "mine", "other")
    other_entry = sync_redis.xadd("undo:stream", {"f": "other"})
    sync_redis.sadd("undo:registry", "other")
    writes = CommandRecorder()
    writes.execute_command("SET", "undo:string", "mine")
    writes.execute_command("ZADD", "undo:zset", "0", "mine")
    writes.execute_command("XADD", "undo:stream", "*", "f", "mine")
    writes.execute_command("HSET", "undo:hash", "f", "mine")
    writes.execute_command("RPUSH", "undo:list", "mine")
    writes.execute_command("SADD", "undo:registry", "mine")
    writes.execute_command("SADD", "undo:big", *map(str, range(10_000)))
    refused, stored = await beside_a_fine_delivery(settings, writes)

    assert isinstance(refused, redis.ResponseError) and "unpack" in str(refused)
    assert stored is None and sync_redis.get("undo:fine") == b"stored"
    assert sync_redis.exists("undo:string", "undo:hash", "undo:big") == 0
    assert sync_redis.zrange("undo:zset", 0, -1) == [b"other"]
    assert sync_redis.lrange("undo:list", 0, -1) == [b"other", b"mine", b"other"], "only the one pushed"
    assert [entry_id for entry_id, _ in sync_redis.xrange("undo:stream")] == [other_entry]
    assert sync_redis.smembers("undo:registry") == {b"other", b"mine"}, "a registry keeps the name"


async def test_a_write_the_script_cannot_undo_fails_its_whole_call_loudly(settings, sync_redis):
    """Only the commands ACCEPT_SCRIPT knows the inverse of may be refused part-way: any other would
    leave a half-written delivery, so the call fails for every delivery in it, with the reason."""
    sync_redis.set("undo:wrong-type", "a string")
    writes = CommandRecorder()
    writes.execute_command("EXPIRE", "undo:string", "60")
    writes.execute_command("ZADD", "undo:wrong-type", "0", "mine")
    outcomes = await beside_a_fine_delivery(settings, writes)

    for outcome in outcomes:
        assert isinstance(outcome, redis.ResponseError) and "cannot undo EXPIRE" in str(outcome)
    assert sync_redis.exists("undo:fine") == 0


async def test_a_refused_delivery_is_503_not_spooled_and_redis_stays_up(client, settings, sync_redis):
    poison(sync_redis)
    body = payloads.gitea_push(repo="poisoned", after=payloads.fake_sha("refused-http"))
    headers = gitea_headers(body, GITEA_SECRET, delivery="refused-http")

    refused = await client.post("/hooks/gitea", data=body, headers=headers)

    assert refused.status == 503 and refused.headers["Retry-After"] == str(settings.spool_retry_after_s)
    answer = await refused.json()
    assert answer == {"error": "Redis refused to store this delivery; retry later"}
    ready = await (await client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["spool"]["pending_bytes"] == 0, "nothing spooled"
    other = gitea_delivery(1)
    accepted = await client.post("/hooks/gitea", data=other.body, headers=other.headers)
    assert accepted.status == 202 and "spooled" not in await accepted.json()

    # Once ops mend the key, the sender's retry is stored.
    sync_redis.delete(index_key("repo", POISONED_REPO))
    retried = await client.post("/hooks/gitea", data=body, headers=headers)
    assert retried.status == 202
    event_id = (await retried.json())["event_id"]
    record = await client.get(f"/api/v1/events/{event_id}", headers=admin_headers())
    assert (await record.json())["repo"] == POISONED_REPO


async def test_a_spooled_line_redis_refuses_is_set_aside_and_the_rest_replayed(
    settings, store, sync_redis, tmp_path
):
    poison(sync_redis)
    now = datetime.now(UTC)
    entries = [
        SpoolEntry(received_at=now, event_ids=assign_event_ids(now, 1), events=push(n, repo))
        for n, repo in enumerate(("hello", "poisoned", "hello"))
    ]
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "segment-000000000001.jsonl").write_bytes(b"".join(e.line() for e in entries))
    journal = Journal(directory, max_bytes=10**6, segment_bytes=10**6)
    journal.open()
    try:
        replayed = await Intake(store, journal, settings).drain()
    finally:
        journal.close()

    assert replayed == 3, "the refused line does not block the ones behind it"
    assert queued_event_ids(sync_redis) == [entries[0].event_ids[0], entries[2].event_ids[0]]
    assert (directory / "rejected.jsonl").read_bytes() == entries[1].line()
    assert list(directory.glob("segment-*")) == []


@pytest.mark.parametrize(
    "binary", [redis_server_binary(), embedded_redis_binary()], ids=["redis-server", "embedded"]
)
async def test_redis_out_of_memory_spools_then_drains_when_memory_is_freed(
    aiohttp_client, settings, tmp_path, binary
):
    server = RedisServer(tmp_path / "redis", binary=binary).start()
    connection = server.client()
    try:
        own = settings.model_copy(update={"redis_url": server.url, "redis_probe_interval_s": 0.05})
        client = await aiohttp_client(create_app(own))
        connection.config_set("maxmemory", "1")  # every write refused: OOM

        item = gitea_delivery(3)
        resp = await client.post("/hooks/gitea", data=item.body, headers=item.headers)
        assert resp.status == 202
        answer = await resp.json()
        assert answer["spooled"] is True
        ready = await (await client.get("/readyz")).json()
        assert ready["status"] == "degraded" and ready["spool"]["pending_bytes"] > 0
        assert queued_event_ids(connection) == []

        connection.config_set("maxmemory", "0")
        await wait_drained(client)
        assert queued_event_ids(connection) == [answer["event_id"]]
    finally:
        connection.close()
        server.kill()


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (redis.ConnectionError("Connection refused"), True),
        (redis.TimeoutError("Timeout reading from socket"), True),
        (TimeoutError(), True),
        (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), True),
        # Redis 7 inside a script, mapped by redis-py:
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
        # Redis 6 inside a script: a script error quoting the refusal.
        (
            redis.ResponseError(
                "Error running script (call to f_25ea): @user_script:1: @user_script: 1: "
                "-OOM command not allowed when used memory > 'maxmemory'."
            ),
            True,
        ),
        (
            redis.ResponseError(
                "Error running script (call to f_25ea): @user_script:1: @user_script: 1: "
                "-READONLY You can't write against a read only replica."
            ),
            True,
        ),
        (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
        (redis.ResponseError("Error running script: @user_script:12: user_script:12: bad argument"), False),
    ],
)
def test_which_errors_mean_redis_takes_no_writes(error, unavailable):
    assert redis_unavailable(error) is unavailable

"""The webhook endpoints end to end over a real socket and a real Redis: every answer in DESIGN.md's
table, and what each leaves behind (an event, a log entry, a job — or nothing)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from broker.store import event_key
from handlers import gitea, harbor
from tests import payloads
from tests.conftest import (
    ADMIN_TOKEN,
    DRONE_SECRET,
    GITEA_SECRET,
    HARBOR_AUTH,
    accept_together,
    admin_headers,
    intake_store,
)
from tests.signing import drone_headers, gitea_headers, harbor_headers


def queued_jobs(sync_redis) -> list[str]:
    return Queue("broker", connection=sync_redis).job_ids


def stored_events(sync_redis) -> int:
    return sync_redis.zcard("broker:events")


async def post(client, source: str, body: bytes, headers: dict[str, str]):
    return await client.post(f"/hooks/{source}", data=body, headers=headers)


async def test_gitea_push_is_durably_queued_and_readable(client, sync_redis):
    body = payloads.gitea_push()
    resp = await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET))
    assert resp.status == 202
    answer = await resp.json()
    assert answer["status"] == "queued"
    assert len(queued_jobs(sync_redis)) == 1

    got = await client.get(f"/api/v1/events/{answer['event_id']}", headers=admin_headers())
    record = await got.json()
    assert record["source"] == "gitea" and record["type"] == "push"
    assert record["team"] == "demo" and record["repo"] == "team-demo/hello"
    assert record["status"] == "queued" and record["payload"]["ref"] == "refs/heads/main"
    assert "X-Gitea-Signature" not in record["headers"] and "x-gitea-signature" not in record["headers"]


@pytest.mark.parametrize(
    "message",
    ["plain commit\n", "handle NaN and -Infinity in the parser\n"],  # the second takes the strict parse
)
async def test_the_record_keeps_the_payload_as_sent(client, sync_redis, message):
    # Pretty-printed as Gitea sends it: the record embeds these very bytes, and reads back as the object.
    body = json.dumps(json.loads(payloads.gitea_push(message=message)), indent=2).encode()
    resp = await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET))
    assert resp.status == 202
    event_id = (await resp.json())["event_id"]
    stored = sync_redis.get(f"broker:event:{event_id}").decode()
    assert stored.endswith(f',"payload":{body.decode()}}}')
    got = await client.get(f"/api/v1/events/{event_id}", headers=admin_headers())
    assert (await got.json())["payload"] == json.loads(body)


async def test_gitea_redelivery_and_manual_replay_are_duplicates(client, sync_redis):
    body = payloads.gitea_push()
    first = await (
        await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET, delivery="d-1"))
    ).json()
    again = await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET, delivery="d-1"))
    # Gitea's "Replay" button sends the same bytes under a new delivery id.
    replay = await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET, delivery="d-2"))
    for resp in (again, replay):
        assert resp.status == 200
        assert await resp.json() == {"event_id": first["event_id"], "status": "duplicate"}
    assert len(queued_jobs(sync_redis)) == 1
    assert stored_events(sync_redis) == 1


@pytest.mark.parametrize(
    ("body", "event", "reason_word"),
    [
        (payloads.gitea_test_delivery(), "push", "test"),
        (payloads.gitea_tag_delete(), "push", "delet"),
        (payloads.gitea_create(ref="feature/x", ref_type="branch"), "create", "create"),
        (payloads.gitea_delete(ref="1.4.2", ref_type="tag"), "delete", "delet"),
        (payloads.gitea_push(), "issues", "unsupported"),
    ],
    ids=["test-delivery", "tag-delete", "create", "delete", "unsupported"],
)
async def test_gitea_ignored_events_are_recorded_not_queued(client, sync_redis, body, event, reason_word):
    resp = await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET, event=event))
    assert resp.status == 202
    answer = await resp.json()
    assert answer["status"] == "ignored"
    assert reason_word in answer["reason"].lower()
    assert not any(
        j.startswith(f"event-{answer['event_id']}") and "announce" in j for j in queued_jobs(sync_redis)
    )
    record = await (await client.get(f"/api/v1/events/{answer['event_id']}", headers=admin_headers())).json()
    assert record["status"] == "ignored" and record["reason"] == answer["reason"]
    jobs = [Queue("broker", connection=sync_redis).fetch_job(j) for j in queued_jobs(sync_redis)]
    assert all(job.func_name != "broker.worker.process_event" for job in jobs)


async def test_drone_final_build_queued_and_non_final_ignored(client, sync_redis):
    final = payloads.drone_build(status="failure", build_id=7)
    running = payloads.drone_build(status="running", build_id=8)
    ok = await (await post(client, "drone", final, drone_headers(final, DRONE_SECRET))).json()
    ignored = await (await post(client, "drone", running, drone_headers(running, DRONE_SECRET))).json()
    assert ok["status"] == "queued"
    assert ignored["status"] == "ignored" and "running" in ignored["reason"]
    dup = await post(client, "drone", final, drone_headers(final, DRONE_SECRET))
    assert dup.status == 200 and (await dup.json())["event_id"] == ok["event_id"]


async def test_harbor_delivery_with_two_resources_becomes_two_events(client, sync_redis):
    resources = [
        payloads.harbor_resource(project="team-demo", repo="hello", tag="1.4.2", digest="sha256:" + "a" * 64),
        payloads.harbor_resource(
            project="team-demo", repo="hello", tag="latest", digest="sha256:" + "a" * 64
        ),
    ]
    body = payloads.harbor_push(resources=resources)
    resp = await post(client, "harbor", body, harbor_headers(HARBOR_AUTH))
    assert resp.status == 202
    answer = await resp.json()
    assert len(answer["event_ids"]) == 2 and answer["event_id"] == answer["event_ids"][0]
    tags = []
    for event_id in answer["event_ids"]:
        record = await (await client.get(f"/api/v1/events/{event_id}", headers=admin_headers())).json()
        tags.append(record["tag"])
        assert record["image"] == "harbor.example.com/team-demo/hello"
    assert tags == ["1.4.2", "latest"]
    assert len(queued_jobs(sync_redis)) == 2


async def test_deliveries_sharing_a_script_call_each_store_their_records_whole(settings, sync_redis):
    """Deliveries submitted in one loop turn share one accept call, each with as many records as it has
    events: every record lands whole under its own id, with its expiry, and every event gets its job."""

    def harbor_delivery(*tags: str):
        resources = [payloads.harbor_resource(tag=tag, digest=payloads.DIGEST) for tag in tags]
        return harbor.parse(harbor_headers(HARBOR_AUTH), payloads.harbor_push(resources=resources))

    body = payloads.gitea_push(after=payloads.fake_sha("shared-call"))
    deliveries = [
        harbor_delivery("1.0.0", "1.0.1", "1.0.2"),
        gitea.parse(gitea_headers(body, GITEA_SECRET, delivery="shared-call"), body),
        harbor_delivery("2.0.0", "2.0.1"),
    ]
    store = intake_store(settings, sync_redis)
    try:
        outcomes, ids = await accept_together(store, deliveries)
    finally:
        await store.aclose()

    for delivery, event_ids, outcome in zip(deliveries, ids, outcomes, strict=True):
        assert not isinstance(outcome, BaseException), outcome
        assert outcome.duplicate_of is None and outcome.event_ids == event_ids
        for item, event_id in zip(delivery, event_ids, strict=True):
            record = json.loads(sync_redis.get(event_key(event_id)))
            assert (record["id"], record["source"], record["tag"]) == (event_id, item.source, item.tag)
            assert record["payload"] == json.loads(item.payload_json)
            assert 0 < sync_redis.ttl(event_key(event_id)) <= 60
    every_id = [event_id for event_ids in ids for event_id in event_ids]
    assert sorted(job.split("-")[1] for job in queued_jobs(sync_redis)) == sorted(every_id)


async def test_harbor_cloudevents_format(client):
    body = payloads.harbor_cloudevent()
    resp = await post(client, "harbor", body, harbor_headers(HARBOR_AUTH, cloudevents=True))
    assert resp.status == 202
    assert (await resp.json())["status"] == "queued"
    again = await post(client, "harbor", body, harbor_headers(HARBOR_AUTH, cloudevents=True))
    assert again.status == 200


def _tamper(body: bytes) -> bytes:
    return body.replace(b"hello", b"hellO", 1)


def rejection_cases():
    gitea_body = payloads.gitea_push()
    drone_body = payloads.drone_build()
    harbor_body = payloads.harbor_push()
    stale = datetime.now(UTC) - timedelta(minutes=10)
    drone_ok = drone_headers(drone_body, DRONE_SECRET)
    return [
        ("gitea", _tamper(gitea_body), gitea_headers(gitea_body, GITEA_SECRET), 401),
        ("gitea", gitea_body, gitea_headers(gitea_body, "wrong-secret"), 401),
        ("gitea", gitea_body, gitea_headers(gitea_body, ""), 401),
        ("gitea", b"not json", gitea_headers(b"not json", GITEA_SECRET), 400),
        ("gitea", b"[1, 2]", gitea_headers(b"[1, 2]", GITEA_SECRET), 400),
        ("gitea", gitea_body, {**gitea_headers(gitea_body, GITEA_SECRET), "Content-Type": "text/plain"}, 415),
        ("drone", drone_body, drone_headers(drone_body, DRONE_SECRET, date=stale), 401),
        ("drone", _tamper(drone_body), drone_ok, 401),
        ("drone", drone_body, {k: v for k, v in drone_ok.items() if k != "Signature"}, 401),
        ("drone", drone_body, drone_headers(drone_body, "wrong-secret"), 401),
        ("harbor", harbor_body, harbor_headers("Bearer wrong"), 401),
        ("harbor", harbor_body, {"Content-Type": "application/json"}, 401),
        ("harbor", b"{}", harbor_headers(HARBOR_AUTH), 400),
        ("harbor", harbor_body, {**harbor_headers(HARBOR_AUTH), "Content-Type": "application/xml"}, 415),
        ("harbor", harbor_body, {**harbor_headers(HARBOR_AUTH), "Content-Encoding": "gzip"}, 415),
    ]


REJECTION_IDS = [
    "gitea-tampered",
    "gitea-wrong-secret",
    "gitea-unsigned",
    "gitea-not-json",
    "gitea-not-object",
    "gitea-content-type",
    "drone-stale-date",
    "drone-tampered",
    "drone-no-signature",
    "drone-wrong-secret",
    "harbor-wrong-auth",
    "harbor-no-auth",
    "harbor-bad-schema",
    "harbor-content-type",
    "harbor-gzip",
]


@pytest.mark.parametrize(("source", "body", "headers", "status"), rejection_cases(), ids=REJECTION_IDS)
async def test_rejections_answer_json_and_store_nothing(client, sync_redis, source, body, headers, status):
    resp = await post(client, source, body, headers)
    assert resp.status == status
    answer = await resp.json()
    assert answer["error"]
    for secret in (GITEA_SECRET, DRONE_SECRET, HARBOR_AUTH, ADMIN_TOKEN):
        assert secret not in json.dumps(answer)
    assert stored_events(sync_redis) == 0
    assert queued_jobs(sync_redis) == []


async def test_oversized_body_is_413_before_anything_else(aiohttp_client, settings, sync_redis):
    from broker.app import create_app

    small = settings.model_copy(update={"max_body_bytes": 1024})
    client = await aiohttp_client(create_app(small))
    body = payloads.gitea_push(message="x" * 4096)
    # Wrong content type and no signature too: the size check comes first.
    resp = await post(client, "gitea", body, {"Content-Type": "text/plain"})
    assert resp.status == 413
    assert "limit" in (await resp.json())["error"]
    assert stored_events(sync_redis) == 0


async def test_missing_secret_disables_the_endpoint(aiohttp_client, settings, sync_redis):
    from broker.app import create_app

    client = await aiohttp_client(create_app(settings.model_copy(update={"drone_secret": None})))
    body = payloads.drone_build()
    resp = await post(client, "drone", body, drone_headers(body, DRONE_SECRET))
    assert resp.status == 503
    assert "BROKER_DRONE_SECRET" in (await resp.json())["error"]
    assert stored_events(sync_redis) == 0


async def test_unknown_sender_path_is_json_404(client):
    resp = await client.post("/hooks/github", data=b"{}")
    assert resp.status == 404
    assert (await resp.json())["error"]


async def test_redis_down_answers_503(aiohttp_client, settings):
    from broker.app import create_app

    # Without a spool (BROKER_SPOOL_MAX_BYTES=0); with one, see tests/test_spool.py.
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0", "spool_max_bytes": 0})
    client = await aiohttp_client(create_app(dead))
    body = payloads.gitea_push()
    resp = await post(client, "gitea", body, gitea_headers(body, GITEA_SECRET))
    assert resp.status == 503
    assert "persist" in (await resp.json())["error"]
    ready = await client.get("/readyz")
    assert ready.status == 503

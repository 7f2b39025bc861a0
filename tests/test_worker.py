"""The worker end to end: real rq workers on a real Redis process what intake queued, record every
decision, retry faults, give up into `dead`, and pick a job up again after a worker is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rq import Queue
from rq.registry import StartedJobRegistry

from broker.errors import PermanentError
from broker.worker import recover_abandoned, worker_queues
from handlers.models import Event, Outcome
from tests import payloads
from tests.conftest import GITEA_SECRET, admin_headers
from tests.signing import gitea_headers, harbor_headers
from tests.worker_support import make_context, run_burst


async def post_push(client) -> str:
    body = payloads.gitea_push()
    resp = await client.post("/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET))
    assert resp.status == 202
    return (await resp.json())["event_id"]


async def get_event(client, event_id: str) -> dict:
    return await (await client.get(f"/api/v1/events/{event_id}", headers=admin_headers())).json()


async def kill_worker_mid_job(client, event_id: str, redis_url: str) -> None:
    """A real worker process whose job hangs, SIGKILLed once the event is being processed."""
    worker = subprocess.Popen([sys.executable, "-m", "tests.worker_support", redis_url], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 30
        while (await get_event(client, event_id))["status"] != "processing":
            assert time.monotonic() < deadline, "the worker never picked the job up"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.kill()


async def test_worker_processes_a_queued_event_and_records_why(client, settings):
    event_id = await post_push(client)
    ctx, _ = make_context(settings)
    run_burst(ctx)
    record = await get_event(client, event_id)
    assert record["status"] == "done"
    assert record["attempts"] == 1
    assert "no cluster configured" in record["reason"]
    [action] = record["actions"]
    assert action["decision"] == "skipped" and action["target"] == "team-demo/hello"


async def test_faults_are_retried_then_dead_and_visible(client, settings):
    calls: list[str] = []

    def flaky(event: Event) -> Outcome:
        calls.append(event.id)
        raise RuntimeError("argocd answered 502")

    event_id = await post_push(client)
    ctx, _ = make_context(settings.model_copy(update={"max_attempts": 3}), flaky)
    # Retry intervals are 0 in tests, so rq requeues at once and one burst sees every attempt.
    run_burst(ctx)
    record = await get_event(client, event_id)
    assert len(calls) == 3
    assert record["status"] == "dead" and record["attempts"] == 3
    assert "gave up after 3 attempts" in record["reason"] and "502" in record["reason"]
    dead = await (await client.get("/api/v1/events?status=dead", headers=admin_headers())).json()
    assert [e["id"] for e in dead["items"]] == [event_id]


async def test_a_transient_fault_then_success_ends_done(client, settings):
    calls: list[int] = []

    def once_broken(event: Event) -> Outcome:
        calls.append(event.attempts)
        if len(calls) == 1:
            raise ConnectionError("kube-apiserver reset the connection")
        return Outcome(status="done", reason="synced")

    event_id = await post_push(client)
    ctx, _ = make_context(settings, once_broken)
    run_burst(ctx)
    record = await get_event(client, event_id)
    assert calls == [1, 2]
    assert record["status"] == "done" and record["reason"] == "synced" and record["attempts"] == 2


async def test_permanent_error_goes_dead_without_retries(client, settings):
    calls: list[str] = []

    def hopeless(event: Event) -> Outcome:
        calls.append(event.id)
        raise PermanentError("write-back target escapes the repository")

    event_id = await post_push(client)
    ctx, _ = make_context(settings, hopeless)
    run_burst(ctx)
    record = await get_event(client, event_id)
    assert len(calls) == 1 and record["status"] == "dead"


async def test_replay_requeues_a_dead_event(client, settings):
    def broken(event: Event) -> Outcome:
        raise RuntimeError("boom")

    event_id = await post_push(client)
    run_burst(make_context(settings.model_copy(update={"max_attempts": 1}), broken)[0])
    assert (await get_event(client, event_id))["status"] == "dead"

    resp = await client.post(f"/api/v1/events/{event_id}/replay", headers=admin_headers())
    assert resp.status == 202
    assert (await get_event(client, event_id))["status"] == "queued"
    run_burst(make_context(settings)[0])
    record = await get_event(client, event_id)
    assert record["status"] == "done" and record["attempts"] == 1


async def test_ignored_team_events_are_announced_to_subscribers(client, settings):
    body = payloads.harbor_scan()
    resp = await client.post("/hooks/harbor", data=body, headers=harbor_headers("Bearer harbor-test-token"))
    answer = await resp.json()
    assert answer["status"] == "ignored"
    ctx, sent = make_context(settings)
    run_burst(ctx)
    [notice] = sent
    assert notice.kind == "event.ignored" and notice.team == "demo" and notice.event_id == answer["event_id"]


async def test_event_survives_a_worker_killed_mid_job(client, settings, sync_redis, redis_url):
    event_id = await post_push(client)
    await kill_worker_mid_job(client, event_id, redis_url)
    queue = Queue("broker", connection=sync_redis)
    assert StartedJobRegistry(queue=queue).get_job_ids(), "the killed job is left in rq's started registry"
    assert (await get_event(client, event_id))["status"] == "processing"

    # Once the dead worker's heartbeat has lapsed, recovery hands the job back and a new worker runs it.
    recover_abandoned(sync_redis, worker_queues(settings, sync_redis), now=time.time() + 3600)
    run_burst(make_context(settings)[0])
    record = await get_event(client, event_id)
    assert record["status"] == "done"
    assert record["attempts"] == 2


async def test_an_event_whose_worker_died_on_its_last_try_goes_dead(
    aiohttp_client, settings, sync_redis, redis_url
):
    from broker.app import create_app

    # One attempt only: the job has no retry left once its worker dies.
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_attempts": 1})))
    event_id = await post_push(client)
    await kill_worker_mid_job(client, event_id, redis_url)

    recover_abandoned(sync_redis, worker_queues(settings, sync_redis), now=time.time() + 3600)
    record = await get_event(client, event_id)
    assert record["status"] == "dead"
    assert "worker died" in record["reason"]
    dead = await (await client.get("/api/v1/events?status=dead", headers=admin_headers())).json()
    assert [e["id"] for e in dead["items"]] == [event_id]

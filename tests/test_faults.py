"""Faults in CI, each ending with the exact set of events that came out the other end: Redis killed and
restarted mid-burst (its own redis-server with AOF `appendfsync always`, never the shared one), the spool
filled up, Redis restarted with AOF after accepting, and a worker killed -9 mid-burst."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from rq import Queue

from broker.app import create_app
from broker.settings import Settings
from broker.worker import recover_abandoned, worker_queues
from handlers.models import Event, Outcome
from tests.burst import Answer, delivery, post_all, wait_drained
from tests.fault_worker import EFFECTS, RUNS, recording
from tests.worker_support import make_context, run_burst

# own_redis, own_settings: a redis-server of the test's own, to stop and restart.
pytest_plugins = ("tests.redis_fixtures",)


def accepted_ids(answers: list[Answer]) -> list[str]:
    return [event_id for answer in answers if answer.status == 202 for event_id in answer.event_ids]


def process_all(settings: Settings) -> list[str]:
    """Run a worker until the queue is empty (in the main thread: rq installs signal handlers); the ids
    it processed, in order."""
    processed: list[str] = []

    def record(event: Event) -> Outcome:
        processed.append(event.id)
        return Outcome(status="done", reason="recorded")

    run_burst(make_context(settings, record)[0])
    return processed


async def test_redis_killed_and_restarted_mid_burst_loses_and_doubles_nothing(
    aiohttp_client, own_settings, own_redis
):
    await asyncio.to_thread(own_redis.start)
    client = await aiohttp_client(create_app(own_settings))
    burst = [delivery(i) for i in range(240)]

    async def fault(count: int) -> None:
        if count == 60:
            await asyncio.to_thread(own_redis.kill)
        elif count == 150:
            await asyncio.to_thread(own_redis.start)

    answers = await post_all(client.post, burst, concurrency=12, on_answer=fault)

    assert [a.status for a in answers] == [202] * len(burst), "every authentic delivery is accepted"
    spooled = [a for a in answers if a.body.get("spooled")]
    assert 0 < len(spooled) < len(burst), "the outage happened mid-burst"
    await wait_drained(client)
    processed = process_all(own_settings)
    expected = accepted_ids(answers)
    assert len(expected) == len(set(expected)) == 240
    assert sorted(processed) == sorted(expected), "each accepted event processed exactly once"


async def test_a_full_spool_answers_503_and_only_accepted_events_come_out(
    aiohttp_client, own_settings, own_redis
):
    # Redis is down from the start; the spool holds a handful of deliveries.
    small = own_settings.model_copy(update={"spool_max_bytes": 40_000, "spool_retry_after_s": 7})
    client = await aiohttp_client(create_app(small))
    burst = [delivery(i) for i in range(3 * 12)]
    answers = await post_all(client.post, burst, concurrency=1)

    statuses = [a.status for a in answers]
    first_refusal = statuses.index(503)
    assert first_refusal > 0 and set(statuses[:first_refusal]) == {202}
    refused = [a for a in answers if a.status == 503]
    assert all(a.headers["Retry-After"] == "7" and "spool is full" in a.body["error"] for a in refused)
    assert (await client.get("/readyz")).status == 503, "full spool and no Redis: not ready"

    await asyncio.to_thread(own_redis.start)
    await wait_drained(client)
    processed = process_all(small)
    assert sorted(processed) == sorted(accepted_ids(answers))


async def test_redis_restarted_with_aof_loses_no_accepted_event(aiohttp_client, own_settings, own_redis):
    await asyncio.to_thread(own_redis.start)
    client = await aiohttp_client(create_app(own_settings))
    answers = await post_all(client.post, [delivery(i) for i in range(60)], concurrency=8)
    assert {a.status for a in answers} == {202} and not any(a.body.get("spooled") for a in answers)

    await asyncio.to_thread(own_redis.kill)  # SIGKILL: only what the AOF already holds survives
    await asyncio.to_thread(own_redis.start)
    stored = own_redis.client()
    expected = accepted_ids(answers)
    assert all(stored.exists(f"broker:event:{event_id}") for event_id in expected)
    assert Queue("broker", connection=stored).count == len(expected)
    stored.close()
    processed = process_all(own_settings)
    assert sorted(processed) == sorted(expected)


async def test_worker_killed_mid_burst_every_event_done_once(client, settings, sync_redis, redis_url):
    answers = await post_all(client.post, [delivery(i) for i in range(30)], concurrency=8)
    expected = accepted_ids(answers)
    worker = subprocess.Popen([sys.executable, "-m", "tests.fault_worker", redis_url], cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 30
        while sync_redis.hlen(RUNS) < 10:
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never got going"
            await asyncio.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        worker.kill()
    assert sync_redis.hlen(EFFECTS) < len(expected), "the worker died before the end of the burst"

    # Once its heartbeat has lapsed, the killed job goes back to rq; a new worker finishes everything.
    recover_abandoned(sync_redis, worker_queues(settings, sync_redis), now=time.time() + 3600)
    run_burst(make_context(settings, recording)[0])

    effects = {key.decode() for key in sync_redis.hkeys(EFFECTS)}
    runs = {key.decode(): int(value) for key, value in sync_redis.hgetall(RUNS).items()}
    assert effects == set(expected), "every event's effect applied, exactly once"
    assert len(expected) <= sum(runs.values()) <= len(expected) + 1, "only the job cut short ran twice"
    records = [Event.model_validate_json(sync_redis.get(f"broker:event:{i}")) for i in expected]
    assert {e.status for e in records} == {"done"}
    assert all(e.attempts == runs[e.id] for e in records), "attempts count the runs"

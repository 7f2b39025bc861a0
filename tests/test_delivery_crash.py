"""Crash safety of notification delivery (issue 4): a real worker process, the production command
`python -m broker.cli worker --burst --queues notify` configured through BROKER_* variables, is SIGKILLed
while its delivery attempt is in flight: the local receiver holds the first request open, so the kill lands
after the receiver got the message and before the worker heard the answer.

Then the abandoned job is handed back (`recover_abandoned`, as a restarted worker does once the dead one's
heartbeat has lapsed) and an in-process burst worker with the scheduler finishes it. The delivery ends
`succeeded`, the receiver got the message at most twice, both times with the same `webhook-id` and a valid
Standard Webhooks signature (so it can dedupe: at-least-once with a stable id), and rq keeps nothing of it
in its started or failed registries."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from aiohttp import web
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from broker.notify.fanout import JOB_CRASH_RETRIES, JOB_CRASH_RETRY_INTERVALS_S, emit
from broker.notify.store import NotifyStore
from broker.settings import Settings
from broker.worker import recover_abandoned, worker_queues
from tests.notify_support import Received, Receiver, notify_settings, work_until
from tests.test_delivery import notice, only_delivery, subscribe

STARTUP_S = 60.0  # a fresh interpreter importing the broker (kubernetes included) on a busy CI box


class HoldingReceiver(Receiver):
    """Records every request; holds the first one open until `release()`, answers the others 200."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()  # set once the first request is in hand
        self._release = asyncio.Event()  # bound to the receiver's loop on first wait

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._release.set)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), body))
            first = not self.holding.is_set()
            self.holding.set()
        if first:
            await self._release.wait()
        return web.Response(text="ok")


@pytest.fixture(name="holding")
def holding_fixture() -> Iterator[HoldingReceiver]:
    server = HoldingReceiver()
    server.start()
    yield server
    server.release()
    server.stop()


def worker_env(settings: Settings) -> dict[str, str]:
    """The worker process's configuration, as an operator gives it. The delivery knobs travel with each
    job (NotifyConfig); the worker's own copy matters for jobs it would create itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_") and k != "KUBECONFIG"}
    env.update(
        BROKER_REDIS_URL=str(settings.redis_url),
        BROKER_DATA_DIR=str(settings.data_dir),
        BROKER_LOG_LEVEL="WARNING",
        BROKER_NOTIFY_SSRF_ALLOW=",".join(settings.notify_ssrf_allow),
        BROKER_NOTIFY_RETRY_SCHEDULE=",".join(str(s) for s in settings.notify_retry_schedule),
        BROKER_NOTIFY_RETRY_JITTER=str(settings.notify_retry_jitter),
        BROKER_NOTIFY_TIMEOUT_S=str(settings.notify_timeout_s),
    )
    return env


def kill_worker_when(settings: Settings, log: Path, reached: Callable[[], bool]) -> None:
    """Start a notify worker process, wait until `reached()`, SIGKILL it."""
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "worker", "--burst", "--queues", "notify"],
            env=worker_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_S
        while not reached():
            assert worker.poll() is None, f"the worker exited early: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the worker never reached the receiver"
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_worker_killed_mid_attempt_delivers_once_with_a_stable_webhook_id(
    sync_redis: redis.Redis, settings: Settings, holding: HoldingReceiver, tmp_path: Path
) -> None:
    # A long HTTP timeout: the held attempt must still be waiting for its answer when the kill lands.
    nsettings = notify_settings(settings, notify_timeout_s=10.0)
    sub_id, secret = subscribe(sync_redis, nsettings, holding.url())
    assert secret is not None
    [delivery_id] = emit(sync_redis, nsettings, [notice()])
    queue = Queue(nsettings.notify_queue_name, connection=sync_redis)
    [job_id] = queue.job_ids

    kill_worker_when(nsettings, tmp_path / "worker.log", holding.holding.is_set)
    holding.release()  # the held request ends; its client is gone

    # Abandoned: the delivery still waits for this job, which rq still counts as started.
    abandoned = only_delivery(sync_redis, sub_id)
    assert abandoned.status == "pending" and abandoned.attempts == 0
    started = StartedJobRegistry(queue=queue)
    assert started.get_job_ids(cleanup=False) == [job_id]

    queues = worker_queues(nsettings, sync_redis, ["notify"])
    recover_abandoned(sync_redis, queues, now=time.time() + 3600)
    # rq hands the job back through its crash retry, due after the first crash interval; the scheduler
    # would move it then. Move it now, as the scheduler does once that time has come.
    job = Job.fetch(job_id, connection=sync_redis)
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == JOB_CRASH_RETRIES - 1
    scheduled = ScheduledJobRegistry(queue=queue)
    due = scheduled.get_scheduled_time(job_id).timestamp() - time.time()
    assert 0 < due <= JOB_CRASH_RETRY_INTERVALS_S[0]
    scheduled.requeue(job_id)

    def settled() -> bool:
        return only_delivery(sync_redis, sub_id).status != "pending"

    work_until(sync_redis, [nsettings.notify_queue_name], settled)
    delivery = only_delivery(sync_redis, sub_id)
    assert delivery.id == delivery_id
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.last_status_code == 200
    [attempt] = NotifyStore(sync_redis).attempts(delivery_id)  # the killed attempt left no record
    assert attempt.status_code == 200

    requests = holding.at("/hook")
    # At most two, and here exactly two: the held one (the receiver had it in hand), then the recovered one.
    assert len(requests) == 2
    assert {r.headers["webhook-id"] for r in requests} == {delivery.message_id}
    first, second = (r.verify(secret) for r in requests)  # standardwebhooks raises on a bad signature
    assert first["data"] == second["data"] and first["type"] == second["type"] == "deployment.succeeded"

    assert started.get_job_ids() == [] and FailedJobRegistry(queue=queue).get_job_ids() == []
    assert scheduled.get_job_ids() == [] and queue.count == 0
    assert FinishedJobRegistry(queue=queue).get_job_ids() == [job_id]
    assert Job.fetch(job_id, connection=sync_redis).get_status() == JobStatus.FINISHED


def test_a_delivery_whose_worker_died_on_its_last_try_goes_dead(
    sync_redis: redis.Redis, settings: Settings, holding: HoldingReceiver, tmp_path: Path
) -> None:
    nsettings = notify_settings(settings, notify_timeout_s=10.0)
    sub_id, _ = subscribe(sync_redis, nsettings, holding.url())
    [delivery_id] = emit(sync_redis, nsettings, [notice()])
    queue = Queue(nsettings.notify_queue_name, connection=sync_redis)
    [job_id] = queue.job_ids
    # This job is on its last crash retry: its earlier workers died too.
    job = Job.fetch(job_id, connection=sync_redis)
    job.retries_left = 0
    job.save()

    kill_worker_when(nsettings, tmp_path / "worker.log", holding.holding.is_set)
    holding.release()
    recover_abandoned(sync_redis, worker_queues(nsettings, sync_redis, ["notify"]), now=time.time() + 3600)

    delivery = only_delivery(sync_redis, sub_id)
    assert delivery.id == delivery_id
    assert delivery.status == "dead" and "worker died" in (delivery.last_error or "")
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job_id]

"""Worker contexts for tests, importable by dotted path so a real worker subprocess can use them
(rq's own tests keep job functions in tests/fixtures.py for the same reason)."""

from __future__ import annotations

import signal
import sys
import time

from rq import SimpleWorker

from broker.queue import event_queue, retry_policy, sync_redis
from broker.settings import Settings
from broker.store import SyncEventStore
from broker.worker import Processor, WorkerContext, install, no_cluster, worker_queues
from handlers.models import Event, Outcome
from handlers.notices import Notice


def make_context(settings: Settings, process: Processor = no_cluster) -> tuple[WorkerContext, list[Notice]]:
    """A worker context whose notifications land in a list the test can read."""
    assert settings.redis_url
    client = sync_redis(settings.redis_url)
    store = SyncEventStore(
        client,
        event_queue(settings, client),
        retry=retry_policy(settings),
        retention_s=int(settings.retention_days * 86400),
    )
    sent: list[Notice] = []
    return WorkerContext(settings, client, store, process, sent.extend), sent


def run_burst(context: WorkerContext) -> None:
    # rq installs its own SIGINT/SIGTERM handlers; put pytest's back once the burst is over.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    install(context)
    try:
        queues = worker_queues(context.settings, context.redis)
        SimpleWorker(queues, connection=context.redis).work(burst=True)
    finally:
        install(None)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def stuck(event: Event) -> Outcome:
    time.sleep(120)
    return no_cluster(event)


if __name__ == "__main__":
    # python -m tests.worker_support <redis_url>: a worker whose jobs hang, to be killed mid-job.
    settings = Settings(redis_url=sys.argv[1], retry_intervals=[0, 0, 0, 0])
    ctx, _ = make_context(settings, stuck)
    run_burst(ctx)

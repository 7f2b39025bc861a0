"""A worker for fault tests whose every run is visible in Redis, runnable as a subprocess so a test can
kill -9 it mid-job (python -m tests.fault_worker <redis_url>), and importable for the in-process worker
that finishes the work after the kill.

Each run bumps `RUNS[event id]`, takes a little time (so a kill lands mid-job), then records the event's
effect in `EFFECTS` with HSETNX: an effect applied at most once per event, as the real executors are
idempotent. "Exactly once in effect" is then: EFFECTS holds every accepted event id, once."""

from __future__ import annotations

import os
import sys
import time

from broker.settings import Settings
from broker.worker import context, no_cluster
from handlers.models import Event, Outcome
from tests.worker_support import make_context, run_burst

RUNS = "test:fault:runs"
EFFECTS = "test:fault:effects"
PAUSE_S = 0.03


def recording(event: Event) -> Outcome:
    redis = context().redis
    redis.hincrby(RUNS, event.id, 1)
    time.sleep(PAUSE_S)
    redis.hsetnx(EFFECTS, event.id, os.getpid())
    return no_cluster(event)


if __name__ == "__main__":
    settings = Settings(redis_url=sys.argv[1], retry_intervals=[0, 0, 0, 0])
    ctx, _ = make_context(settings, recording)
    run_burst(ctx)

"""The rq side: job functions that process events, and the worker loop that runs them.

Job functions receive only an event id; the process-wide `WorkerContext` (settings, Redis, the GitOps
engine, the notifier) is built once per worker process by `run_worker`, or installed by a test."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis
from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.registry import StartedJobRegistry

from broker import metrics, worker_health
from broker.errors import PermanentError
from broker.logs import event_context
from broker.queue import event_queue, retry_policy, sync_redis
from broker.settings import Settings
from broker.store import SyncEventStore, mark_dead
from handlers.models import Action, Event, Outcome
from handlers.notices import Notice

if TYPE_CHECKING:
    from broker.gitops import GitOps

log = logging.getLogger(__name__)

NO_CLUSTER = "no cluster configured: the event was recorded, nothing to act on"
MAINTENANCE_LOCK = "broker:maintenance-lock"

Processor = Callable[[Event], Outcome]
Notifier = Callable[[Iterable[Notice]], Any]


def no_cluster(event: Event) -> Outcome:
    target = event.image or event.repo or event.source
    return Outcome(
        status="done",
        reason=NO_CLUSTER,
        actions=[Action(kind="plan", target=target, decision="skipped", detail=NO_CLUSTER)],
    )


@dataclass
class WorkerContext:
    settings: Settings
    redis: Redis
    store: SyncEventStore
    process: Processor
    notify: Notifier
    closers: list[Callable[[], None]] = field(default_factory=list)
    gitops: GitOps | None = None  # the engine follow-up jobs look through

    @classmethod
    def build(cls, settings: Settings, connection: Redis | None = None) -> WorkerContext:
        from broker.gitops import build_gitops
        from broker.notify.fanout import emit

        assert settings.redis_url, "the worker needs a Redis URL (the CLI starts an embedded one)"
        client = connection or sync_redis(settings.redis_url)
        store = SyncEventStore(
            client,
            event_queue(settings, client),
            retry=retry_policy(settings),
            retention_s=int(settings.retention_days * 86400),
        )
        gitops = build_gitops(settings, client)
        context = cls(
            settings=settings,
            redis=client,
            store=store,
            process=gitops.process if gitops else no_cluster,
            notify=lambda notices: emit(client, settings, notices),
            gitops=gitops,
        )
        if gitops:
            context.closers.append(gitops.close)
        return context

    def close(self) -> None:
        for close in self.closers:
            close()


_context: WorkerContext | None = None


def install(context: WorkerContext | None) -> None:
    global _context
    _context = context


def context() -> WorkerContext:
    if _context is None:
        raise RuntimeError("no WorkerContext installed: start workers with `broker worker`")
    return _context


def process_event(event_id: str) -> str:
    """Process one event: plan and act, record every decision, notify. Safe to run twice: an event that
    already reached a final status is left alone, and executors are idempotent."""
    ctx = context()
    with event_context(event_id):
        event = ctx.store.get(event_id)
        if event is None:
            log.warning("event vanished before processing (expired by retention)")
            return "missing"
        if event.status in ("done", "ignored", "dead"):
            return event.status
        running = _advance(ctx, event, status="processing", attempts=event.attempts + 1, reason=None)
        try:
            outcome = ctx.process(running)
        except PermanentError as exc:
            _advance(ctx, running, status="dead", reason=f"permanent failure: {exc}")
            metrics.record_processed(ctx.redis, event, "dead")  # ops metrics (broker/metrics.py)
            return "dead"
        except Exception as exc:
            if running.attempts >= ctx.settings.max_attempts:
                log.exception("giving up after %d attempts", running.attempts)
                _advance(
                    ctx, running, status="dead", reason=f"gave up after {running.attempts} attempts: {exc}"
                )
                metrics.record_processed(ctx.redis, event, "dead")  # ops metrics
                return "dead"
            log.warning("attempt %d failed, will retry: %s", running.attempts, exc)
            _advance(
                ctx, running, status="failed", reason=f"attempt {running.attempts} failed: {exc}; retrying"
            )
            metrics.record_processed(ctx.redis, event, "retry")  # ops metrics
            raise
        _advance(
            ctx,
            running,
            status=outcome.status,
            reason=outcome.reason,
            actions=[*running.actions, *outcome.actions],
            deployment_id=outcome.deployment_id or running.deployment_id,
        )
        log.info("event processed", extra={"status": outcome.status, "reason": outcome.reason})
        metrics.record_processed(ctx.redis, event, outcome.status)  # ops metrics
        if outcome.notices:
            ctx.notify(outcome.notices)
        return outcome.status


def follow_sync(spec: dict[str, Any]) -> str:
    """One look at a requested sync; it schedules the next one itself until the sync settles
    (broker/gitops/follow_job.py)."""
    from broker.gitops.follow_job import follow_hop

    ctx = context()
    with event_context(str(spec.get("event_id"))):
        if ctx.gitops is None:
            log.warning("a sync follow-up job reached a worker without a cluster: dropped")
            return "no cluster"
        return follow_hop(ctx.gitops.engine, ctx.store, ctx.notify, spec)


def event_job_failed(job: Job, connection: Redis, exc_type: type, exc: BaseException, tb: object) -> None:
    """rq's failure callback for process jobs; it runs before rq decides on a retry. When none is left
    (a job whose worker died on every try never reaches process_event's own bookkeeping), the event
    goes `dead`: visible in the dead-letter list and replayable, instead of `processing` forever."""
    if job.retries_left:
        return
    event_id = job.args[0]
    why = (
        "its worker died mid-job"
        if issubclass(exc_type, AbandonedJobError)
        else f"{exc_type.__name__}: {exc}"
    )
    if mark_dead(connection, event_id, f"gave up: the job will not run again ({why})"):
        with event_context(event_id):
            log.error("event job %s failed for good: %s", job.id, why)


def announce_ignored(event_id: str) -> None:
    """Tell subscribed teams that an authentic event was ignored, and why."""
    ctx = context()
    with event_context(event_id):
        event = ctx.store.get(event_id)
        if event is None or event.status != "ignored":
            return
        summary = f"{event.source} {event.type} on {event.repo or event.image}: ignored ({event.reason})"
        notice = Notice(kind="event.ignored", team=event.team, event_id=event.id, summary=summary)
        ctx.notify([notice])


def _advance(ctx: WorkerContext, event: Event, **changes: Any) -> Event:
    updated = event.model_copy(update={**changes, "updated_at": datetime.now(UTC)})
    ctx.store.save(updated, previous_status=event.status)
    return updated


def recover_abandoned(connection: redis.Redis, queues: Iterable[Queue], *, now: float | None = None) -> None:
    """Jobs whose worker died mid-run (its heartbeat lapsed: ~90 s) go back to rq, which retries them
    within their retry budget. rq's maintenance does this too; doing it at start-up saves a cycle."""
    for queue in queues:
        StartedJobRegistry(queue=queue, connection=connection).cleanup(timestamp=now)


def _maintenance_loop(settings: Settings, store: SyncEventStore, stop: threading.Event) -> None:
    while not stop.wait(60):
        try:
            if store.redis.set(MAINTENANCE_LOCK, "1", nx=True, ex=55):
                store.trim(max_count=settings.retention_count)
        except redis.RedisError as exc:
            log.warning("retention trim failed: %s", exc)


QUEUE_ROLES = ("events", "notify")


def worker_queues(
    settings: Settings, connection: redis.Redis, roles: Iterable[str] = QUEUE_ROLES
) -> list[Queue]:
    names = {"events": settings.queue_name, "notify": settings.notify_queue_name}
    return [Queue(names[role], connection=connection) for role in roles]


def run_worker(
    settings: Settings,
    *,
    roles: Iterable[str] = QUEUE_ROLES,
    burst: bool = False,
    name: str | None = None,
    health_port: int = 0,
    siblings_alive: Callable[[], bool] = lambda: True,
) -> None:
    """One worker process on the queues of `roles`. SimpleWorker runs jobs in-process: rq's forking
    Worker costs ~11 ms a job. With `health_port`, it answers Kubernetes probes (broker/worker_health.py)."""
    ctx = WorkerContext.build(settings)
    install(ctx)
    stop = threading.Event()
    threading.Thread(target=_maintenance_loop, args=(settings, ctx.store, stop), daemon=True).start()
    queues = worker_queues(settings, ctx.redis, roles)
    recover_abandoned(ctx.redis, queues)
    # rq's maintenance (which re-queues jobs of dead workers) every minute instead of every ten.
    worker = SimpleWorker(queues, connection=ctx.redis, name=name, maintenance_interval=60)
    health = worker_health.serve(health_port, worker, ctx.redis, siblings_alive) if health_port else None
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level.upper())
    finally:
        if health:
            health.shutdown()
        stop.set()
        ctx.close()
        install(None)


def wait_for_redis(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    client = sync_redis(url)
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

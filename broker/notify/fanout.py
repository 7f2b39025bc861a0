"""Fan-out: each notice becomes one delivery per matching subscription of its team, each delivery one rq
job on the notify queue, so a slow or failing target never holds up events or other targets.

Noise control happens here: the same notice to the same subscription within `notify_dedup_window_s` is
dropped, and with `notify_fold_window_s` > 0 notices for one app within that window ride on the first
one's delivery, which is sent once when the window closes (off by default: it delays every message)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import redis
from redis.client import Pipeline
from rq import Callback, Queue, Retry
from ulid import ULID

from broker.notify.config import NotifyConfig
from broker.notify.models import Delivery, Subscription
from broker.notify.store import NotifyStore
from broker.settings import Settings
from handlers.notices import NOTICE_KINDS, Notice

log = logging.getLogger(__name__)

JOB_FUNC = "broker.notify.delivery.deliver_job"
JOB_RESULT_TTL_S = 600
JOB_FAILURE_TTL_S = 7 * 24 * 3600
# rq's own timeout for one attempt: the HTTP timeout plus room for DNS and bookkeeping.
JOB_TIMEOUT_MARGIN_S = 60
JOB_FAILED = "broker.notify.delivery.deliver_job_failed"
JOB_CRASH_RETRIES = 2
JOB_CRASH_RETRY_INTERVALS_S = [30, 120]


def emit(redis: redis.Redis, settings: Settings, notices: Iterable[Notice]) -> list[str]:
    """The worker's entry point: fan `notices` out; returns the ids of the deliveries created (a notice
    folded into an open delivery, or dropped as a duplicate, creates none)."""
    return fan_out(redis, NotifyConfig.from_settings(settings), notices)


def fan_out(
    client: redis.Redis, config: NotifyConfig, notices: Iterable[Notice], *, exclude: str | None = None
) -> list[str]:
    store = NotifyStore(client, config.delivery_ttl_s)
    queue = Queue(config.queue_name, connection=client)
    created: list[str] = []
    by_team: dict[str, list[Subscription]] = {}
    for notice in notices:
        if notice.kind not in NOTICE_KINDS:
            log.warning("dropping notice of unknown kind %r", notice.kind)
            continue
        if not notice.team:
            continue  # subscriptions belong to teams; a notice without one has no audience
        if notice.team not in by_team:
            by_team[notice.team] = store.subscriptions(notice.team)
        for sub in by_team[notice.team]:
            if sub.id == exclude or not sub.matches(notice):
                continue
            if not store.claim_dedup(sub.id, notice, config.dedup_window_s):
                continue
            try:
                delivery_id = _deliver(store, queue, config, sub, notice)
            except Exception:
                store.release_dedup(sub.id, notice)  # let the event's retry send it again
                raise
            if delivery_id is not None:
                created.append(delivery_id)
    return created


def _deliver(
    store: NotifyStore, queue: Queue, config: NotifyConfig, sub: Subscription, notice: Notice
) -> str | None:
    now = datetime.now(UTC)
    fold = config.fold_window_s > 0 and notice.app is not None
    if fold and store.fold_into_open(sub.id, notice, now) is not None:
        return None
    delivery = Delivery(
        id=str(ULID()),
        subscription_id=sub.id,
        team=sub.team,
        kind=notice.kind,
        app=notice.app,
        summary=notice.summary,
        message_id="",
        token=secrets.token_hex(8),
        folding=fold,
        created_at=now,
        updated_at=now,
        next_attempt_at=now + timedelta(seconds=config.fold_window_s if fold else 0),
    )
    delivery = delivery.model_copy(update={"message_id": f"msg_{delivery.id}"})
    with store.redis.pipeline() as pipe:
        pipe.multi()  # explicit MULTI: rq's enqueue joins it instead of starting its own
        store.add_delivery(
            pipe, delivery, notice, config.keep_deliveries, config.fold_window_s if fold else 0
        )
        schedule(queue, config, delivery.id, delivery.token, config.fold_window_s if fold else 0, pipe)
        pipe.execute()
    return delivery.id


def schedule(
    queue: Queue,
    config: NotifyConfig,
    delivery_id: str,
    token: str,
    delay_s: float,
    pipeline: Pipeline | None = None,
) -> None:
    """One rq job for one attempt of one delivery, now or after `delay_s` (rq's scheduler moves it)."""
    options = {
        "job_id": f"notify-{delivery_id}-{token}",
        "description": f"notify delivery {delivery_id}",
        "job_timeout": int(config.timeout_s) + JOB_TIMEOUT_MARGIN_S,
        "result_ttl": JOB_RESULT_TTL_S,
        "failure_ttl": JOB_FAILURE_TTL_S,
        # Only for a job that crashed or whose worker died: it re-runs with the same token.
        "retry": Retry(max=JOB_CRASH_RETRIES, interval=JOB_CRASH_RETRY_INTERVALS_S),
        # ...and when those are spent too, the delivery goes dead instead of waiting for no job.
        "on_failure": Callback(JOB_FAILED),
        "pipeline": pipeline,
    }
    args = (delivery_id, token, config.to_job_arg())
    if delay_s > 0:
        queue.enqueue_in(timedelta(seconds=delay_s), JOB_FUNC, *args, **options)
    else:
        queue.enqueue(JOB_FUNC, *args, **options)

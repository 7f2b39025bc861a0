"""The delivery job: one attempt of one delivery, then the next step decided by the outcome.

- 2xx: succeeded; the subscription's failure streak resets.
- 410 Gone: the receiver asked us to stop: the subscription is disabled and the team is told.
- Refused by the SSRF check at send time: dead at once (retrying would not change the policy).
- Anything else (3xx, 4xx, 5xx, timeout, connection error): retried after the next step of
  `notify_retry_schedule` with +-`notify_retry_jitter`, or later when the receiver sent `Retry-After`
  (429/503/...), capped at `notify_max_retry_after_s`. After the last step the delivery is dead, visible
  in the API and replayable.
- A subscription with `notify_disable_after_dead` dead deliveries in a row, or failing without a success
  for `notify_disable_after_s`, is disabled and the team's other subscriptions get `subscription.disabled`.

Each attempt costs three Redis round trips besides the request: read the delivery, read its subscription
and notices, write the outcome (attempt log, status, health, next job) in one MULTI."""

from __future__ import annotations

import logging
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Queue, get_current_job
from rq.exceptions import AbandonedJobError
from rq.job import Job

from broker import metrics
from broker.notify import signing, ssrf, targets, templates, transport
from broker.notify.config import NotifyConfig
from broker.notify.fanout import fan_out, schedule
from broker.notify.models import Attempt, Delivery, Subscription
from broker.notify.store import NotifyStore
from broker.notify.transport import SendResult
from handlers.notices import Notice

log = logging.getLogger(__name__)

GONE = 410
ACTIVE = frozenset({"pending", "retrying"})


def deliver_job(delivery_id: str, token: str, config: dict[str, Any]) -> str:
    """rq entry point (by dotted path): the connection is the worker's, the config travels with the job."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("deliver_job runs inside an rq worker")
    return Deliverer(job.connection, NotifyConfig.model_validate(config)).run(delivery_id, token)


def deliver_job_failed(
    job: Job, connection: redis.Redis, exc_type: type, exc: BaseException, tb: object
) -> None:
    """rq's failure callback for delivery jobs; it runs before rq decides on a retry. When no crash retry
    is left (the worker died on every try), the delivery goes dead: listed and replayable, never left
    `pending` without a job to run it."""
    if job.retries_left:
        return
    delivery_id, token, config = job.args
    why = "its worker died mid-attempt" if issubclass(exc_type, AbandonedJobError) else exc_type.__name__
    Deliverer(connection, NotifyConfig.model_validate(config)).abandon(delivery_id, token, why)


class Deliverer:
    def __init__(self, client: redis.Redis, config: NotifyConfig) -> None:
        self.config = config
        self.store = NotifyStore(client, config.delivery_ttl_s)
        self.queue = Queue(config.queue_name, connection=client)
        self.allow = ssrf.parse_allow(config.ssrf_allow)

    def run(self, delivery_id: str, token: str) -> str:
        """The delivery's status after this attempt, or 'stale' when this job no longer owns it. The job
        holding the delivery's current token owns it until it finishes or hands a new token to the next
        attempt's job; a replay hands out a new token too, so duplicates and leftovers stop here. A job
        rq re-runs after its worker died keeps its token and tries again (at-least-once)."""
        delivery = self._owned(delivery_id, token)
        if delivery is None:
            return "stale"
        self.store.close_fold(delivery)
        sub, notices = self.store.subscription_and_notices(delivery.subscription_id, delivery.id)
        now = datetime.now(UTC)
        if sub is None or not sub.enabled:
            why = "subscription deleted" if sub is None else f"subscription disabled: {sub.disabled_reason}"
            return self._conclude(delivery, now, None, "dead", reason=why)
        if not notices:
            return self._conclude(delivery, now, None, "dead", reason="no notice to send (expired)")
        try:
            result, address = self._send(sub, delivery, notices, now)
        except ssrf.SSRFError as exc:
            refused = SendResult(ok=False, duration_ms=0, error=str(exc))
            return self._conclude(delivery, now, refused, "dead", sub=sub)
        except Exception as exc:  # a bug must cost one attempt, not strand the delivery without a job
            log.exception("delivery %s: attempt crashed", delivery.id)
            result = SendResult(ok=False, duration_ms=0, error=f"internal error: {exc!r}"[:500])
            address = None
        return self._after(sub, delivery, now, result, address)

    def abandon(self, delivery_id: str, token: str, why: str) -> str:
        """Give up on a delivery whose job will not run again; 'stale' when that job no longer owned it."""
        delivery = self._owned(delivery_id, token)
        if delivery is None:
            return "stale"
        sub = self.store.subscription(delivery.subscription_id)
        reason = f"the delivery job will not run again: {why}"
        return self._conclude(delivery, datetime.now(UTC), None, "dead", reason=reason, sub=sub)

    def _owned(self, delivery_id: str, token: str) -> Delivery | None:
        """The delivery while the job holding `token` still owns it (active, current token), else None."""
        delivery = self.store.delivery(delivery_id)
        if delivery is None or delivery.token != token or delivery.status not in ACTIVE:
            return None
        return delivery

    def _send(
        self, sub: Subscription, delivery: Delivery, notices: list[Notice], now: datetime
    ) -> tuple[SendResult, str | None]:
        try:
            checked = ssrf.check_hosts(targets.network_hosts(sub.target), self.allow)
        except ssrf.ResolveError as exc:
            return SendResult(ok=False, duration_ms=0, error=str(exc)), None
        timeout = self.config.timeout_s
        if sub.target.type == "apprise":
            title = templates.title(notices)
            body = templates.text(notices, sub.template)
            kind = templates.notify_type(notices[-1].kind)
            return transport.send_apprise(sub.target.url, title, body, kind, timeout), None
        address = checked[0].addresses[0]
        body_text = templates.webhook_body(notices, sub.template, now)
        headers = signing.sign(sub.signing_secrets(now), delivery.message_id, now, body_text)
        sent = transport.post_webhook(
            sub.target.url, address, body_text, headers, timeout, self.config.ca_bundle
        )
        return sent, address

    def _after(
        self, sub: Subscription, delivery: Delivery, now: datetime, result: SendResult, address: str | None
    ) -> str:
        if result.ok:
            return self._conclude(delivery, now, result, "succeeded", address=address, sub=sub)
        if result.status_code == GONE:
            status = self._conclude(delivery, now, result, "dead", address=address, reason="410 Gone")
            self._disable(sub, "the target answered 410 Gone")
            return status
        health = self.store.record_failure(sub.id, now)
        failing_for = (now - health.failing_since).total_seconds() if health.failing_since else 0.0
        if failing_for > self.config.disable_after_s:
            status = self._conclude(delivery, now, result, "dead", address=address)
            self._disable(sub, f"failing without a success for {int(failing_for)} s")
            return status
        delay = self.next_delay(delivery.round_attempts + 1, result.retry_after_s)
        if delay is None:
            return self._conclude(delivery, now, result, "dead", address=address, sub=sub)
        return self._conclude(delivery, now, result, "retrying", address=address, delay=delay)

    def next_delay(self, failed_attempts: int, retry_after_s: float | None) -> float | None:
        """Seconds until the next attempt after `failed_attempts` failures in this round; None when the
        schedule is spent. Jitter spreads retries so a recovering receiver is not hit all at once."""
        schedule_s = self.config.retry_schedule
        if failed_attempts > len(schedule_s):
            return None
        base = schedule_s[failed_attempts - 1]
        jitter = self.config.retry_jitter
        delay = base * random.uniform(1 - jitter, 1 + jitter) if jitter > 0 else base
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.config.max_retry_after_s))
        return max(0.0, delay)

    def _conclude(
        self,
        delivery: Delivery,
        now: datetime,
        result: SendResult | None,
        status: str,
        *,
        address: str | None = None,
        reason: str | None = None,
        delay: float | None = None,
        sub: Subscription | None = None,
    ) -> str:
        """Write the attempt (if one was made) and the delivery's new status in one MULTI; with `sub`,
        also its health (success resets the streak, dead extends it); when retrying, hand a new token
        to the next attempt's job, enqueued in the same MULTI so neither lands without the other."""
        values: dict[str, Any] = {"status": status, "updated_at": now.isoformat(), "next_attempt_at": None}
        attempt = None
        if result is not None:
            attempt = Attempt(
                number=delivery.attempts + 1, at=now, duration_ms=result.duration_ms,
                status_code=result.status_code, error=result.error, address=address,
                next_retry_s=None if delay is None else round(delay, 3),
            )  # fmt: skip
            values.update(
                attempts=delivery.attempts + 1, round_attempts=delivery.round_attempts + 1,
                last_status_code=result.status_code, last_error=result.error,
            )  # fmt: skip
        if reason is not None:
            values["last_error"] = reason
        token = secrets.token_hex(8) if status == "retrying" else ""
        values["token"] = token
        if delay is not None:
            values["next_attempt_at"] = (now + timedelta(seconds=delay)).isoformat()
        with self.store.redis.pipeline() as pipe:
            pipe.multi()
            self.store.update_delivery(delivery.id, values, attempt, pipe=pipe)
            metrics.inc(pipe, metrics.DELIVERIES, delivery.kind, status)  # ops metrics, in the same MULTI
            if sub is not None and status == "succeeded":
                self.store.record_success(pipe, sub.id, now)
            if sub is not None and status == "dead":
                self.store.record_dead(pipe, sub.id)
            if delay is not None:
                schedule(self.queue, self.config, delivery.id, token, delay, pipe)
            replies = pipe.execute()
        if sub is not None and status == "dead":
            dead_in_a_row = int(replies[-1])  # record_dead's HINCRBY was queued last
            if dead_in_a_row >= self.config.disable_after_dead:
                self._disable(sub, f"{dead_in_a_row} deliveries in a row are dead")
        return status

    def _disable(self, sub: Subscription, reason: str) -> None:
        if not self.store.disable(sub.id, reason, datetime.now(UTC)):
            return
        log.warning("disabled subscription %s of team %s: %s", sub.id, sub.team, reason)
        notice = Notice(
            kind="subscription.disabled",
            team=sub.team,
            summary=f"Notifications to {targets.mask(sub.target)} were disabled: {reason}. "
            "Fix the target, re-enable the subscription and replay its dead deliveries.",
            data={"subscription_id": sub.id, "subscription_name": sub.name, "reason": reason},
        )
        fan_out(self.store.redis, self.config, [notice], exclude=sub.id)

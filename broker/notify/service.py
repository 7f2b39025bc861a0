"""What the subscriptions API does, as plain synchronous functions over the store (the web layer runs them
in a thread and only maps their errors to answers). Every view here masks target secrets; signing secrets
leave only as the return value of `create`, `rotate_secret` and a patch that makes a webhook target."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from rq import Queue
from ulid import ULID

from broker.notify import signing, ssrf, targets
from broker.notify.config import NotifyConfig
from broker.notify.fanout import schedule
from broker.notify.models import (
    Delivery,
    Health,
    SigningSecret,
    Subscription,
    SubscriptionIn,
    SubscriptionPatch,
    Target,
)
from broker.notify.store import DELIVERY_KEY, SUB_HEALTH_KEY, NotifyStore


class InvalidTarget(ValueError):
    """400: malformed, unsupported, unresolvable or refused (SSRF) target."""


class NotFound(LookupError):
    """404."""


class Conflict(RuntimeError):
    """409: the request does not fit the current state."""


def check_target(target: Target, config: NotifyConfig) -> None:
    """Syntax, then the SSRF check on every host the target will reach (DNS: call off the event loop)."""
    try:
        targets.validate(target)
        ssrf.check_hosts(targets.network_hosts(target), ssrf.parse_allow(config.ssrf_allow))
    except (targets.TargetError, ssrf.SSRFError, ssrf.ResolveError) as exc:
        raise InvalidTarget(str(exc)) from None


def create(
    store: NotifyStore, config: NotifyConfig, team: str, body: SubscriptionIn
) -> tuple[Subscription, str | None]:
    check_target(body.target, config)
    now = datetime.now(UTC)
    secret = signing.new_secret() if body.target.type == "webhook" else None
    sub = Subscription(
        id=f"sub_{ULID()}",
        team=team,
        name=body.name,
        target=body.target,
        kinds=body.kinds,
        apps=body.apps,
        enabled=body.enabled,
        template=body.template,
        secrets=[SigningSecret(value=secret, created_at=now)] if secret else [],
        created_at=now,
        updated_at=now,
    )
    store.add_subscription(sub)
    return sub, secret


def update(
    store: NotifyStore, config: NotifyConfig, sub: Subscription, patch: SubscriptionPatch
) -> tuple[Subscription, str | None]:
    now = datetime.now(UTC)
    values: dict[str, Any] = patch.model_dump(mode="json", include=patch.model_fields_set)
    secret = None
    if patch.target is not None and patch.target != sub.target:
        check_target(patch.target, config)
        if patch.target.type == "webhook" and not sub.secrets:
            secret = signing.new_secret()
            values["secrets"] = [SigningSecret(value=secret, created_at=now).model_dump(mode="json")]
        elif patch.target.type == "apprise":
            values["secrets"] = []
    if patch.enabled and not sub.enabled:
        values.update(disabled_at=None, disabled_reason=None)
        store.redis.delete(SUB_HEALTH_KEY.format(id=sub.id))  # a fresh start for the failure counters
    values["updated_at"] = now.isoformat()
    updated = store.update_subscription(sub.id, values)
    if updated is None:
        raise NotFound("no such subscription")
    return updated, secret


def rotate_secret(store: NotifyStore, config: NotifyConfig, sub: Subscription) -> tuple[Subscription, str]:
    if sub.target.type != "webhook":
        raise Conflict("only webhook targets are signed; this one has no secret to rotate")
    now = datetime.now(UTC)
    rotated = signing.rotate(sub.secrets, now, config.secret_overlap_s)
    values = {"secrets": [s.model_dump(mode="json") for s in rotated], "updated_at": now.isoformat()}
    updated = store.update_subscription(sub.id, values)
    if updated is None:
        raise NotFound("no such subscription")
    return updated, rotated[0].value


def replay(store: NotifyStore, config: NotifyConfig, sub: Subscription, delivery_id: str) -> Delivery:
    """Send a finished (dead or succeeded) delivery again: a new round of the retry schedule, same
    `webhook-id`. Any job still holding the old token finds it changed and stops."""
    delivery = store.delivery(delivery_id)
    if delivery is None or delivery.subscription_id != sub.id:
        raise NotFound("no such delivery for this subscription")
    if not sub.enabled:
        raise Conflict("the subscription is disabled: enable it (PATCH enabled=true) before replaying")
    token = secrets.token_hex(8)
    now = datetime.now(UTC).isoformat()
    values = {"status": "pending", "round_attempts": 0, "token": token, "replays": delivery.replays + 1,
              "next_attempt_at": now, "updated_at": now}  # fmt: skip
    pairs = [item for key, value in values.items() for item in (key, json.dumps(value))]
    if not store.compare_and_set(DELIVERY_KEY.format(id=delivery.id), "status", ["dead", "succeeded"], pairs):
        raise Conflict(f"delivery is {delivery.status}: only dead or succeeded deliveries can be replayed")
    try:
        schedule(Queue(config.queue_name, connection=store.redis), config, delivery.id, token, 0)
    except Exception:
        store.update_delivery(delivery.id, {"status": delivery.status, "token": ""})  # replayable again
        raise
    replayed = store.delivery(delivery.id)
    if replayed is None:
        raise NotFound("no such delivery for this subscription")
    return replayed


def view(sub: Subscription, health: Health, now: datetime | None = None) -> dict[str, Any]:
    data = sub.model_dump(mode="json", exclude={"secrets", "target"})
    data["target"] = {
        "type": sub.target.type,
        "url": targets.mask(sub.target),
        "service": targets.service_name(sub.target),
    }
    if sub.target.type == "webhook":
        live = [s for s in sub.secrets if s.expires_at is None or s.expires_at > (now or datetime.now(UTC))]
        data["signing"] = {
            "scheme": "standard-webhooks v1",
            "live_secrets": len(live),
            "secret_created_at": live[0].created_at.isoformat() if live else None,
            "previous_secrets_expire_at": [s.expires_at.isoformat() for s in live[1:] if s.expires_at],
        }
    data["health"] = health.model_dump(mode="json")
    return data


def delivery_view(store: NotifyStore, delivery: Delivery, *, detail: bool = False) -> dict[str, Any]:
    data = delivery.model_dump(mode="json", exclude={"token"})
    data["attempt_log"] = [a.model_dump(mode="json") for a in store.attempts(delivery.id)]
    if detail:
        data["notice_log"] = [n.model_dump(mode="json") for n in store.notices(delivery.id)]
    return data

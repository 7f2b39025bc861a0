"""Every Redis key of team notifications, and the reads and writes on them (sync redis-py: the delivery
job runs in rq; the web API calls this through `asyncio.to_thread`).

Records are hashes whose field values are JSON, so concurrent writers (a PATCH, a delivery job disabling
the subscription, a replay) each touch only their own fields. State changes that must not race go through
one compare-and-set script."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import redis
from pydantic import BaseModel
from redis.client import Pipeline

from broker.notify.models import Attempt, Delivery, Health, Subscription
from broker.store import text
from handlers.notices import Notice

SUB_KEY = "broker:notify:sub:{id}"
SUB_HEALTH_KEY = "broker:notify:sub:{id}:health"
SUB_DELIVERIES_KEY = "broker:notify:sub:{id}:deliveries"  # zset, all scores 0: ordered by ULID
TEAM_SUBS_KEY = "broker:notify:team:{team}:subs"
ALL_SUBS_KEY = "broker:notify:subs"
DELIVERY_KEY = "broker:notify:delivery:{id}"
DELIVERY_ATTEMPTS_KEY = "broker:notify:delivery:{id}:attempts"
DELIVERY_NOTICES_KEY = "broker:notify:delivery:{id}:notices"
DEDUP_KEY = "broker:notify:dedup:{sub}:{digest}"
FOLD_KEY = "broker:notify:fold:{sub}:{app}"

M = TypeVar("M", bound=BaseModel)

# HSET the trailing field/value pairs only if KEYS[1]'s ARGV[1] field holds one of the N allowed values.
_CAS = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local n = tonumber(ARGV[2])
for i = 1, n do
  if current == ARGV[2 + i] then
    redis.call('HSET', KEYS[1], unpack(ARGV, 3 + n, #ARGV))
    return 1
  end
end
return 0
"""
# Append a notice to the delivery an open fold window points at; false when no window is open.
_FOLD = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
local notices = ARGV[1] .. id .. ':notices'
redis.call('RPUSH', notices, ARGV[2])
redis.call('EXPIRE', notices, ARGV[3])
local delivery = ARGV[1] .. id
redis.call('HINCRBY', delivery, 'notices', 1)
redis.call('HSET', delivery, 'kind', ARGV[4], 'summary', ARGV[5], 'updated_at', ARGV[6])
return id
"""
_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# redis-py's hset wants a Mapping keyed by its own union type; Mapping keys are invariant, hence Any.
HashFields = dict[Any, str]


def encode(values: Mapping[str, Any]) -> HashFields:
    return {key: json.dumps(value, default=str) for key, value in values.items()}


def decode(cls: type[M], raw: Mapping[bytes | str, bytes | str]) -> M | None:
    if not raw:
        return None
    return cls.model_validate({text(k): json.loads(v) for k, v in raw.items()})


def dump(model: BaseModel, *fields: str) -> HashFields:
    return encode(model.model_dump(mode="json", include=set(fields) or None))


def notice_digest(notice: Notice) -> str:
    """Identity of a notice for the dedup window. `data` is left out on purpose: it may carry times or
    counters that differ between two sends of the same news (Flux #509)."""
    parts = (notice.kind, notice.team, notice.app, notice.event_id, notice.deployment_id, notice.summary)
    return hashlib.sha256("\x1f".join("" if p is None else p for p in parts).encode()).hexdigest()[:32]


class NotifyStore:
    def __init__(self, client: redis.Redis, delivery_ttl_s: int = 14 * 24 * 3600) -> None:
        self.redis = client
        self.delivery_ttl_s = delivery_ttl_s
        self._cas = client.register_script(_CAS)
        self._fold = client.register_script(_FOLD)
        self._delete_if = client.register_script(_DELETE_IF)

    # Subscriptions.

    def add_subscription(self, sub: Subscription) -> None:
        with self.redis.pipeline() as pipe:
            pipe.hset(SUB_KEY.format(id=sub.id), mapping=dump(sub))
            pipe.sadd(TEAM_SUBS_KEY.format(team=sub.team), sub.id)
            pipe.sadd(ALL_SUBS_KEY, sub.id)
            pipe.execute()

    def subscription(self, sub_id: str) -> Subscription | None:
        return decode(Subscription, self.redis.hgetall(SUB_KEY.format(id=sub_id)))

    def subscriptions(self, team: str | None = None) -> list[Subscription]:
        """One team's subscriptions, or every team's (team None), oldest first."""
        key = ALL_SUBS_KEY if team is None else TEAM_SUBS_KEY.format(team=team)
        ids = sorted(text(i) for i in self.redis.smembers(key))
        with self.redis.pipeline(transaction=False) as pipe:
            for sub_id in ids:
                pipe.hgetall(SUB_KEY.format(id=sub_id))
            raws = pipe.execute()
        return [sub for raw in raws if (sub := decode(Subscription, raw)) is not None]

    def update_subscription(self, sub_id: str, values: Mapping[str, Any]) -> Subscription | None:
        """Write only the given fields (JSON-ready values); None when the subscription is gone."""
        if values:
            # Keyed on the record's own id field, so a concurrent delete is not resurrected.
            pairs = [item for pair in encode(values).items() for item in pair]
            if not self.compare_and_set(SUB_KEY.format(id=sub_id), "id", [sub_id], pairs):
                return None
        return self.subscription(sub_id)

    def delete_subscription(self, sub: Subscription) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(SUB_KEY.format(id=sub.id), SUB_HEALTH_KEY.format(id=sub.id))
            pipe.delete(SUB_DELIVERIES_KEY.format(id=sub.id))
            pipe.srem(TEAM_SUBS_KEY.format(team=sub.team), sub.id)
            pipe.srem(ALL_SUBS_KEY, sub.id)
            pipe.execute()

    def disable(self, sub_id: str, reason: str, now: datetime) -> bool:
        """Disable an enabled subscription; False if it was already disabled (or is gone), so the team
        is told once."""
        stamp = json.dumps(now.isoformat())
        pairs = ["disabled_at", stamp, "disabled_reason", json.dumps(reason), "updated_at", stamp]
        return self.compare_and_set(
            SUB_KEY.format(id=sub_id), "enabled", [True], ["enabled", "false", *pairs]
        )

    # Subscription health: failures in a row decide auto-disable.

    def health(self, sub_id: str) -> Health:
        return decode(Health, self.redis.hgetall(SUB_HEALTH_KEY.format(id=sub_id))) or Health()

    def record_success(self, pipe: Pipeline, sub_id: str, now: datetime) -> None:
        key = SUB_HEALTH_KEY.format(id=sub_id)
        pipe.hset(key, mapping=encode({"consecutive_dead": 0, "last_success_at": now.isoformat()}))
        pipe.hdel(key, "failing_since")

    def record_failure(self, sub_id: str, now: datetime) -> Health:
        """Note a failed attempt; the health after it (when the failure streak started)."""
        key = SUB_HEALTH_KEY.format(id=sub_id)
        stamp = json.dumps(now.isoformat())
        with self.redis.pipeline() as pipe:
            pipe.hsetnx(key, "failing_since", stamp)
            pipe.hset(key, "last_failure_at", stamp)
            pipe.hgetall(key)
            raw = pipe.execute()[-1]
        return decode(Health, raw) or Health()

    def record_dead(self, pipe: Pipeline, sub_id: str) -> None:
        """Queue the dead-streak increment; its result is the pipeline's reply to this command."""
        pipe.hincrby(SUB_HEALTH_KEY.format(id=sub_id), "consecutive_dead", 1)

    # Noise control.

    def claim_dedup(self, sub_id: str, notice: Notice, window_s: float) -> bool:
        """True the first time this notice goes to this subscription within the window."""
        if window_s <= 0:
            return True
        key = DEDUP_KEY.format(sub=sub_id, digest=notice_digest(notice))
        return bool(self.redis.set(key, b"1", nx=True, px=max(1, int(window_s * 1000))))

    def release_dedup(self, sub_id: str, notice: Notice) -> None:
        self.redis.delete(DEDUP_KEY.format(sub=sub_id, digest=notice_digest(notice)))

    def fold_into_open(self, sub_id: str, notice: Notice, now: datetime) -> str | None:
        """Append to the delivery whose fold window for this app is open; its id, or None."""
        result = self._fold(
            keys=[FOLD_KEY.format(sub=sub_id, app=notice.app)],
            args=[
                DELIVERY_KEY.format(id=""), notice.model_dump_json(), self.delivery_ttl_s,
                json.dumps(notice.kind), json.dumps(notice.summary), json.dumps(now.isoformat()),
            ],
        )  # fmt: skip
        return text(result) if result else None

    def close_fold(self, delivery: Delivery) -> None:
        if delivery.folding and delivery.app is not None:
            self._delete_if(keys=[FOLD_KEY.format(sub=delivery.subscription_id, app=delivery.app)],
                            args=[delivery.id])  # fmt: skip

    # Deliveries.

    def add_delivery(
        self, pipe: Pipeline, delivery: Delivery, notice: Notice, keep: int, fold_window_s: float = 0
    ) -> None:
        """Queue the writes of a new delivery on `pipe` (the caller adds the rq enqueue and executes)."""
        key = DELIVERY_KEY.format(id=delivery.id)
        notices = DELIVERY_NOTICES_KEY.format(id=delivery.id)
        index = SUB_DELIVERIES_KEY.format(id=delivery.subscription_id)
        pipe.hset(key, mapping=dump(delivery))
        pipe.rpush(notices, notice.model_dump_json())
        pipe.expire(key, self.delivery_ttl_s)
        pipe.expire(notices, self.delivery_ttl_s)
        pipe.zadd(index, {delivery.id: 0})
        pipe.zremrangebyrank(index, 0, -(keep + 1))
        if fold_window_s > 0 and delivery.app is not None:
            marker = FOLD_KEY.format(sub=delivery.subscription_id, app=delivery.app)
            pipe.set(marker, delivery.id, nx=True, px=int(fold_window_s * 1000))

    def delivery(self, delivery_id: str) -> Delivery | None:
        return decode(Delivery, self.redis.hgetall(DELIVERY_KEY.format(id=delivery_id)))

    def subscription_and_notices(
        self, sub_id: str, delivery_id: str
    ) -> tuple[Subscription | None, list[Notice]]:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(SUB_KEY.format(id=sub_id))
            pipe.lrange(DELIVERY_NOTICES_KEY.format(id=delivery_id), 0, -1)
            raw_sub, raw_notices = pipe.execute()
        return decode(Subscription, raw_sub), [Notice.model_validate_json(raw) for raw in raw_notices]

    def notices(self, delivery_id: str) -> list[Notice]:
        raws = self.redis.lrange(DELIVERY_NOTICES_KEY.format(id=delivery_id), 0, -1)
        return [Notice.model_validate_json(raw) for raw in raws]

    def attempts(self, delivery_id: str) -> list[Attempt]:
        raws = self.redis.lrange(DELIVERY_ATTEMPTS_KEY.format(id=delivery_id), 0, -1)
        return [Attempt.model_validate_json(raw) for raw in raws]

    def update_delivery(
        self,
        delivery_id: str,
        values: Mapping[str, Any],
        attempt: Attempt | None = None,
        pipe: Pipeline | None = None,
    ) -> None:
        """Write `values` (and append `attempt`), on `pipe` when given (the caller executes it)."""
        keys = [DELIVERY_KEY.format(id=delivery_id), DELIVERY_NOTICES_KEY.format(id=delivery_id)]
        target = pipe if pipe is not None else self.redis.pipeline()
        target.hset(keys[0], mapping=encode(values))
        if attempt is not None:
            keys.append(DELIVERY_ATTEMPTS_KEY.format(id=delivery_id))
            target.rpush(keys[-1], attempt.model_dump_json())
        for key in keys:
            target.expire(key, self.delivery_ttl_s)
        if pipe is None:
            target.execute()

    def deliveries(
        self, sub_id: str, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first; `cursor` is the last id of the previous page."""
        index = SUB_DELIVERIES_KEY.format(id=sub_id)
        found: list[Delivery] = []
        upper = f"({cursor}" if cursor else "+"
        while len(found) < limit:
            ids = [text(i) for i in self.redis.zrevrangebylex(index, upper, "-", start=0, num=limit)]
            if not ids:
                return found, None
            with self.redis.pipeline(transaction=False) as pipe:
                for delivery_id in ids:
                    pipe.hgetall(DELIVERY_KEY.format(id=delivery_id))
                raws = pipe.execute()
            expired = [i for i, raw in zip(ids, raws, strict=True) if not raw]
            if expired:
                self.redis.zrem(index, *expired)
            for raw in raws:
                delivery = decode(Delivery, raw)
                if delivery is not None and (status is None or delivery.status == status):
                    found.append(delivery)
                    if len(found) == limit:
                        return found, delivery.id
            upper = f"({ids[-1]}"
        return found, None

    def compare_and_set(self, key: str, field: str, allowed: Iterable[Any], values: list[str]) -> bool:
        """HSET `values` (field, JSON value, ...) on `key` only if `field` holds one of `allowed`."""
        expected = [json.dumps(value) for value in allowed]
        return bool(self._cas(keys=[key], args=[field, len(expected), *expected, *values]))

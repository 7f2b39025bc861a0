"""GitOps coordination state in Redis; this module owns these key names. One writer per Application (a
lock with an owner token), bursts gathered per Application (pending candidates, then a group owned by the
event that applies them, and a marker on every event folded into it), and per (event, app) progress so a
re-run neither writes back twice nor syncs twice."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import redis

from broker.errors import TransientError
from handlers.image_strategies import Candidate

PREFIX = "broker:gitops:"
LOCK_KEY = PREFIX + "lock:{app}"
PENDING_KEY = PREFIX + "pending:{app}"  # hash "<event>|<alias>" -> candidate JSON
GROUP_KEY = PREFIX + "group:{event}:{app}"  # hash "<event>|<alias>" -> candidate JSON
COALESCED_KEY = PREFIX + "coalesced:{event}:{app}"  # -> the event id that applied it
PROGRESS_KEY = PREFIX + "progress:{event}:{app}"  # hash stage -> JSON
APPLIED_KEY = PREFIX + "applied:{app}"  # hash alias -> JSON of the last applied candidate
STATE_TTL_S = 7 * 24 * 3600

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_TAKE = """
local items = redis.call('hgetall', KEYS[1])
redis.call('del', KEYS[1])
return items
"""


class GitOpsState:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._release = client.register_script(_RELEASE)
        self._take = client.register_script(_TAKE)

    # --- one writer per Application ---------------------------------------------------------------

    @contextmanager
    def app_lock(self, app: str, *, ttl_s: float, wait_s: float) -> Iterator[None]:
        """Hold the Application's writer lock. Raises TransientError when another worker keeps it
        longer than `wait_s` (the job is retried later)."""
        key, token = LOCK_KEY.format(app=app), uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while not self.redis.set(key, token, nx=True, px=int(ttl_s * 1000)):
            if time.monotonic() > deadline:
                raise TransientError(f"Application {app} is being updated by another worker")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            self._release(keys=[key], args=[token])

    # --- bursts ------------------------------------------------------------------------------------

    @staticmethod
    def _field(candidate: Candidate, alias: str) -> str:
        return f"{candidate.event_id}|{alias}"

    def offer(self, app: str, alias: str, candidate: Candidate) -> None:
        key = PENDING_KEY.format(app=app)
        pipe = self.redis.pipeline()
        pipe.hset(key, self._field(candidate, alias), json.dumps(asdict(candidate)))
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()

    def take_pending(self, app: str) -> dict[str, list[Candidate]]:
        raw = self._take(keys=[PENDING_KEY.format(app=app)])
        return _decode_pairs(raw)

    def save_group(self, event_id: str, app: str, group: dict[str, list[Candidate]]) -> None:
        key = GROUP_KEY.format(event=event_id, app=app)
        mapping: dict[Any, Any] = {
            self._field(c, alias): json.dumps(asdict(c)) for alias, cs in group.items() for c in cs
        }
        pipe = self.redis.pipeline()
        pipe.delete(key)
        if mapping:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, STATE_TTL_S)
        for other in {c.event_id for cs in group.values() for c in cs} - {event_id}:
            pipe.set(COALESCED_KEY.format(event=other, app=app), event_id, ex=STATE_TTL_S)
        pipe.execute()

    def load_group(self, event_id: str, app: str) -> dict[str, list[Candidate]] | None:
        raw = self.redis.hgetall(GROUP_KEY.format(event=event_id, app=app))
        if not raw:
            return None
        return _decode_pairs([item for pair in raw.items() for item in pair])

    def coalesced_into(self, event_id: str, app: str) -> str | None:
        raw = self.redis.get(COALESCED_KEY.format(event=event_id, app=app))
        return raw.decode() if isinstance(raw, bytes) else raw

    # --- progress and what was applied --------------------------------------------------------------

    def progress(self, event_id: str, app: str) -> dict[str, Any]:
        raw = self.redis.hgetall(PROGRESS_KEY.format(event=event_id, app=app))
        return {_text(k): json.loads(v) for k, v in raw.items()}

    def mark(self, event_id: str, app: str, stage: str, value: Any) -> None:
        key = PROGRESS_KEY.format(event=event_id, app=app)
        pipe = self.redis.pipeline()
        pipe.hset(key, stage, json.dumps(value, default=str))
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()

    def applied(self, app: str, alias: str) -> dict[str, Any] | None:
        raw = self.redis.hget(APPLIED_KEY.format(app=app), alias)
        return json.loads(raw) if raw else None

    def record_applied(self, app: str, alias: str, candidate: Candidate, value: str) -> None:
        key = APPLIED_KEY.format(app=app)
        self.redis.hset(key, alias, json.dumps({**asdict(candidate), "value": value}))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _decode_pairs(raw: list[Any]) -> dict[str, list[Candidate]]:
    group: dict[str, list[Candidate]] = {}
    for field, value in zip(raw[::2], raw[1::2], strict=True):
        alias = _text(field).split("|", 1)[1]
        group.setdefault(alias, []).append(Candidate(**json.loads(value)))
    return group

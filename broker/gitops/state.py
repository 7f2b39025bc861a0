"""GitOps coordination state in Redis; this module owns these key names. One writer per Application (a
lock with an owner token), bursts gathered per Application (pending candidates, then a group owned by the
event that applies them, and a marker on every event folded into it), and per (event, app) progress so a
re-run neither writes back twice nor syncs twice, and the owner of each sync's follow-up chain."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import redis
from rq import get_current_job

from broker.errors import TransientError
from broker.store import text
from handlers.image_strategies import Candidate

log = logging.getLogger(__name__)

PREFIX = "broker:gitops:"
LOCK_KEY = PREFIX + "lock:{app}"
PENDING_KEY = PREFIX + "pending:{app}"  # hash "<event>|<alias>" -> candidate JSON
GROUP_KEY = PREFIX + "group:{event}:{app}"  # hash "<event>|<alias>" -> candidate JSON
COALESCED_KEY = PREFIX + "coalesced:{event}:{app}"  # -> the event id that applied it
PROGRESS_KEY = PREFIX + "progress:{event}:{app}"  # hash stage -> JSON
APPLIED_KEY = PREFIX + "applied:{app}"  # hash alias -> JSON of the last applied candidate
FOLLOW_KEY = PREFIX + "follow:{event}:{app}"  # token of the follow-up chain that owns this (event, app)
STATE_TTL_S = 7 * 24 * 3600

# Take the lock if free, or if it is held by an earlier execution of the same rq job: rq runs a job id
# once at a time and retries an abandoned job (its worker died) under the same id, so that holder is dead.
_ACQUIRE = """
local held = redis.call('get', KEYS[1])
if held and (ARGV[3] == '' or string.sub(held, 1, string.len(ARGV[3])) ~= ARGV[3]) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if held then return 2 end
return 1
"""
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
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._take = client.register_script(_TAKE)

    # --- one writer per Application ---------------------------------------------------------------

    @contextmanager
    def app_lock(self, app: str, *, ttl_s: float, wait_s: float) -> Iterator[None]:
        """Hold the Application's writer lock. Raises TransientError when another worker keeps it
        longer than `wait_s` (the job is retried later). A lock left by a killed worker is taken over at
        once by the retry of its job, else it expires after `ttl_s`."""
        key = LOCK_KEY.format(app=app)
        job = get_current_job()
        owner = f"{job.id}|" if job is not None else ""
        token = f"{owner}{uuid.uuid4().hex}"
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            taken = self._acquire(keys=[key], args=[token, int(ttl_s * 1000), owner])
            if taken:
                if taken == 2:
                    log.warning("took over the lock of %s from a dead attempt of this job", app)
                break
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
        return {text(k): json.loads(v) for k, v in raw.items()}

    def mark(self, event_id: str, app: str, stage: str, value: Any) -> None:
        key = PROGRESS_KEY.format(event=event_id, app=app)
        pipe = self.redis.pipeline()
        pipe.hset(key, stage, json.dumps(value, default=str))
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()

    def mark_once(self, event_id: str, app: str, stage: str, value: Any) -> bool:
        """Record `stage` unless it is recorded already; True if this call recorded it."""
        key = PROGRESS_KEY.format(event=event_id, app=app)
        pipe = self.redis.pipeline()
        pipe.hsetnx(key, stage, json.dumps(value, default=str))
        pipe.expire(key, STATE_TTL_S)
        return bool(pipe.execute()[0])

    # --- follow-up chains ---------------------------------------------------------------------------

    def own_follow(self, pipe: Any, event_id: str, app: str, token: str) -> None:
        """On `pipe`: the chain carrying `token` now follows (event, app); an older one stops."""
        pipe.set(FOLLOW_KEY.format(event=event_id, app=app), token, ex=STATE_TTL_S)

    def follows(self, event_id: str, app: str, token: str) -> bool:
        raw = self.redis.get(FOLLOW_KEY.format(event=event_id, app=app))
        return raw is not None and text(raw) == token

    def applied(self, app: str, alias: str) -> dict[str, Any] | None:
        raw = self.redis.hget(APPLIED_KEY.format(app=app), alias)
        return json.loads(raw) if raw else None

    def record_applied(self, app: str, alias: str, candidate: Candidate, value: str) -> None:
        key = APPLIED_KEY.format(app=app)
        self.redis.hset(key, alias, json.dumps({**asdict(candidate), "value": value}))


def _decode_pairs(raw: list[Any]) -> dict[str, list[Candidate]]:
    group: dict[str, list[Candidate]] = {}
    for field, value in zip(raw[::2], raw[1::2], strict=True):
        alias = text(field).split("|", 1)[1]
        group.setdefault(alias, []).append(Candidate(**json.loads(value)))
    return group

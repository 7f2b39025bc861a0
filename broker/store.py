"""The event log in Redis. This module owns every event key name (the rq way) and composes writes on a
pipeline, so the web tier (redis.asyncio) and the workers (sync redis) share one definition of what a
write is. Intake persists the event, its log entries and its rq job in one MULTI before the 202."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import redis.asyncio as aredis
import ulid
from rq import Queue, Retry
from ulid import ULID

from broker.job_template import TEMPLATES
from broker.store_accept import AcceptBatcher, CommandRecorder
from handlers.models import FINAL_STATUSES, Event, Incoming, NewEvent

PREFIX = "broker:"
ALL_INDEX = PREFIX + "events"
INDEX_REGISTRY = PREFIX + "events:indexes"
CHANGES_STREAM = PREFIX + "changes"
# Written by a web process to learn whether Redis takes writes again (broker/spool_drain.py).
WRITE_PROBE = PREFIX + "write-probe"
CHANGES_MAXLEN = 10_000

INDEXED_FIELDS: tuple[str, ...] = ("source", "type", "team", "repo", "status")
# When several filters are given, walk the index most likely to be small.
INDEX_PREFERENCE: tuple[str, ...] = ("repo", "team", "type", "status", "source")
PROCESS_JOB = "broker.worker.process_event"
ANNOUNCE_JOB = "broker.worker.announce_ignored"
EVENT_JOB_FAILED = "broker.worker.event_job_failed"


# Key names as functions (f-strings): the intake builds several per webhook.
def event_key(event_id: str) -> str:
    return f"{PREFIX}event:{event_id}"


def index_key(field: str, value: str) -> str:
    return f"{PREFIX}events:{field}:{value}"


def dedup_key(key: str) -> str:
    return f"{PREFIX}dedup:{key}"


# python-ulid's generator makes the ids (ids made in one millisecond by one process stay in order, which
# the event log's order relies on); their text is written here, from a table of Crockford digit pairs
# (the library's encoder costs as much again as the generator, on every webhook).
_IDS = ulid.default_generator
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DIGIT_PAIRS = [first + second for first in _DIGITS for second in _DIGITS]
_PAIR_SHIFTS = range(120, -1, -10)  # 26 digits of 5 bits: 13 pairs over the 128 bits, 2 leading zeros


def ulid_text(value: bytes) -> str:
    """The 16 bytes of a ULID as its 26-digit text, as `str(ULID)` gives it."""
    number = int.from_bytes(value, "big")
    return "".join([_DIGIT_PAIRS[(number >> shift) & 0x3FF] for shift in _PAIR_SHIFTS])


def assign_event_ids(received_at: datetime, count: int) -> list[str]:
    """Ids for the `count` events of one delivery: distinct and in delivery order (1 ms apart)."""
    first_ms = int(received_at.timestamp() * 1000)
    return [ulid_text(_IDS.generate(first_ms + offset).bytes) for offset in range(count)]


def id_floor(at: datetime) -> str:
    """The smallest ULID of a moment: ids sort by time, so an age cut-off is a lexical bound."""
    return str(ULID.from_timestamp(at.timestamp()))[:10] + "0" * 16


def write_event(
    pipe: Any, event: Event | NewEvent, *, ttl_s: int | None, previous_status: str | None = None
) -> None:
    """Queue on `pipe` (sync or async pipeline, or the intake's recorder) the record, its indexes and its
    change entry. `ttl_s=None` keeps the record's current expiry (for updates made without the settings
    at hand). Plain commands with text arguments (see CommandRecorder): redis-py's builders cost more
    than the rest of the intake's Python."""
    command = pipe.execute_command
    expiry = ("KEEPTTL",) if ttl_s is None else ("EX", str(ttl_s))
    # The live-tail entry is the record without its bulky parts (the page fetches those on demand).
    summary = event.summary_json()
    record = event.record_json(summary=summary)
    command("SET", event_key(event.id), record, *expiry)
    if previous_status is None:
        keys = [index_key(field, value) for field in INDEXED_FIELDS if (value := getattr(event, field))]
        command("ZADD", ALL_INDEX, "0", event.id)
        for key in keys:
            command("ZADD", key, "0", event.id)
        command("SADD", INDEX_REGISTRY, *keys)
    elif previous_status != event.status:
        key = index_key("status", event.status)
        command("ZREM", index_key("status", previous_status), event.id)
        command("ZADD", key, "0", event.id)
        command("SADD", INDEX_REGISTRY, key)
    command("XADD", CHANGES_STREAM, "MAXLEN", "~", str(CHANGES_MAXLEN), "*", "event", summary)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_event(raw: bytes | str | None) -> Event | None:
    return Event.model_validate_json(raw) if raw else None


@dataclass(frozen=True)
class Accepted:
    event_ids: list[str]
    statuses: list[str]
    duplicate_of: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[Event]
    next_cursor: str | None


@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    type: str | None = None
    team: str | None = None
    repo: str | None = None
    status: str | None = None
    since: datetime | None = None

    def matches(self, event: Event) -> bool:
        if self.since and event.received_at < self.since:
            return False
        return all(
            getattr(self, field) is None or getattr(event, field) == getattr(self, field)
            for field in INDEXED_FIELDS
        )

    def index(self) -> str:
        for field in INDEX_PREFERENCE:
            value = getattr(self, field)
            if value is not None:
                return index_key(field, value)
        return ALL_INDEX


class EventStore:
    """Async side, used by the web tier."""

    def __init__(
        self,
        redis_client: aredis.Redis,
        queue: Queue,
        *,
        retry: Retry | None,
        dedup_ttl_s: int,
        retention_s: int,
        accept_timeout_s: float,
    ):
        self.redis = redis_client
        self.queue = queue
        self.retry = retry
        self._dedup_ttl = str(dedup_ttl_s)
        self.retention_s = retention_s
        self._batcher = AcceptBatcher(redis_client, accept_timeout_s)

    async def accept(
        self,
        incoming: Sequence[Incoming],
        *,
        received_at: datetime,
        event_ids: Sequence[str],
    ) -> Accepted:
        """Persist a delivery's events, log entries and jobs atomically, unless any dedup key was seen.
        The writes are composed here and applied by one script call (broker/store_accept.py) that checks
        the dedup keys first, so two racing copies of one delivery settle on one event. The ids are
        assigned before (the answer names them even when the delivery goes to the spool); if the first is
        already stored, this delivery was persisted before (a re-drain) and the answer is a duplicate of
        itself."""
        ids = list(event_ids)
        recorder = CommandRecorder()
        events = self._queue_writes(recorder, incoming, received_at, ids)
        dedup_keys: list[str] = []
        for item, event in zip(incoming, events, strict=True):
            for name in map(dedup_key, item.dedup_keys):
                recorder.execute_command("SET", name, event.id, "EX", self._dedup_ttl)
                dedup_keys.append(name)
        first_key = event_key(ids[0])
        recorder.move_to_end("SET", first_key)
        seen = await self._batcher.submit(dedup_keys, first_key, ids[0], recorder)
        if seen:
            first = seen.decode()
            return Accepted(event_ids=[first], statuses=["duplicate"], duplicate_of=first)
        return Accepted(event_ids=[e.id for e in events], statuses=[e.status for e in events])

    def _queue_writes(
        self, pipe: Any, incoming: Sequence[Incoming], received_at: datetime, ids: Sequence[str]
    ) -> list[NewEvent]:
        events = [NewEvent(item, event_id, received_at) for item, event_id in zip(incoming, ids, strict=True)]
        for event in events:
            write_event(pipe, event, ttl_s=self.retention_s)
        for event in events:
            if event.status == "queued":
                enqueue_event_job(self.queue, pipe, event.id, self.retry)
            elif event.team:
                # Teams may subscribe to "event.ignored"; the fan-out runs in a worker, not here.
                enqueue_event_job(self.queue, pipe, event.id, None, func=ANNOUNCE_JOB)
        return events

    async def get(self, event_id: str) -> Event | None:
        return decode_event(await self.redis.get(event_key(event_id)))

    async def aclose(self) -> None:
        await self._batcher.aclose()
        await self.redis.aclose()

    async def probe_write(self) -> None:
        await self.redis.set(WRITE_PROBE, "1", ex=60)

    async def replay(self, event: Event) -> Event:
        """Queue an event again (after a failure, or to re-apply it): same record, fresh attempts."""
        replayed = event.model_copy(
            update={"status": "queued", "attempts": 0, "reason": f"replayed (was {event.status})"}
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.multi()
            enqueue_event_job(self.queue, pipe, event.id, self.retry)
            write_event(pipe, replayed, ttl_s=self.retention_s, previous_status=event.status)
            await pipe.execute()
        return replayed

    async def query(
        self, filters: EventFilter, *, limit: int, cursor: str | None, scan_budget: int = 5000
    ) -> Page:
        """Newest first. Walks one index in batches and filters the rest in memory; stops after
        `scan_budget` ids so a rare filter over a large log still answers quickly, with a cursor to go on."""
        index = filters.index()
        upper = f"({cursor}" if cursor else "+"
        lower = f"[{id_floor(filters.since)}" if filters.since else "-"
        items: list[Event] = []
        scanned = 0
        batch = max(limit * 2, 50)
        last_id: str | None = None
        while len(items) < limit and scanned < scan_budget:
            found: list[Any] = await self.redis.zrevrangebylex(index, upper, lower, start=0, num=batch)
            ids = [text(i) for i in found]
            if not ids:
                return Page(items=items, next_cursor=None)
            records = await self.redis.mget([event_key(i) for i in ids])
            stale = []
            for event_id, raw in zip(ids, records, strict=True):
                scanned += 1
                last_id = event_id
                event = decode_event(raw)
                if event is None:
                    stale.append(event_id)
                elif filters.matches(event):
                    items.append(event)
                    if len(items) == limit:
                        break
            if stale:
                await self.redis.zrem(index, *stale)
            upper = f"({last_id}"
        return Page(items=items, next_cursor=last_id)

    async def changes_since(self, stream_id: str, *, count: int = 1000) -> list[tuple[str, Event]]:
        entries: Any = await self.redis.xrange(CHANGES_STREAM, min=f"({stream_id}", count=count)
        return [(text(sid), Event.model_validate_json(fields[b"event"])) for sid, fields in entries]


def enqueue_event_job(
    queue: Queue, pipe: Any, event_id: str, retry: Retry | None, func: str = PROCESS_JOB
) -> None:
    """A job about one event; its id names the event so ops can find it in rq's registries. A process
    job whose retries are spent (its worker died every time, say) leaves its event `dead`, never stuck."""
    on_failure = EVENT_JOB_FAILED if func == PROCESS_JOB else None
    TEMPLATES.get(queue, func, retry, on_failure).enqueue(pipe, event_id)


def mark_dead(connection: redis.Redis, event_id: str, reason: str) -> bool:
    """Move an event that is not final yet to `dead`, keeping its expiry. False when it already was."""
    event = decode_event(connection.get(event_key(event_id)))
    if event is None or event.status in FINAL_STATUSES:
        return False
    dead = event.model_copy(update={"status": "dead", "reason": reason, "updated_at": datetime.now(UTC)})
    with connection.pipeline(transaction=True) as pipe:
        write_event(pipe, dead, ttl_s=None, previous_status=event.status)
        pipe.execute()
    return True


class SyncEventStore:
    """Sync side, used by rq workers and the CLI's local commands."""

    def __init__(self, redis_client: redis.Redis, queue: Queue, *, retry: Retry | None, retention_s: int):
        self.redis = redis_client
        self.queue = queue
        self.retry = retry
        self.retention_s = retention_s

    def get(self, event_id: str) -> Event | None:
        return decode_event(self.redis.get(event_key(event_id)))

    def save(self, event: Event, *, previous_status: str) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            write_event(pipe, event, ttl_s=self.retention_s, previous_status=previous_status)
            pipe.execute()

    def trim(self, *, max_count: int, now: datetime | None = None) -> int:
        """Enforce retention on the indexes: drop ids older than the age bound, then the oldest beyond the
        count bound. Records expire on their own TTL; the count bound deletes them explicitly."""
        cutoff = id_floor((now or datetime.now(UTC)) - timedelta(seconds=self.retention_s))
        index_keys: list[Any] = [ALL_INDEX, *self.redis.smembers(INDEX_REGISTRY)]
        extra = self.redis.zcard(ALL_INDEX) - max_count
        doomed: list[Any] = []
        if extra > 0:
            doomed = self.redis.zrangebylex(ALL_INDEX, "-", "+", start=0, num=extra)
            cutoff = max(cutoff, text(doomed[-1]) + "~")  # '~' sorts after every ULID character
        with self.redis.pipeline(transaction=False) as pipe:
            for key in index_keys:
                pipe.zremrangebylex(key, "-", f"({cutoff}")
            for chunk in _chunks(doomed, 500):
                pipe.unlink(*[event_key(i.decode()) for i in chunk])
            removed = pipe.execute()
        return int(removed[0])


def _chunks(items: list[bytes], size: int) -> Iterable[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

"""Where an authentic delivery goes: straight into Redis while Redis answers, into the local spool while
it does not, and from the spool back into Redis, in order, once it answers again.

The web tier keeps one belief about Redis (`RedisLink`). A Redis error on intake marks it down, and from
then on deliveries go to the spool without waiting on Redis; a background task pings Redis every
`BROKER_REDIS_PROBE_INTERVAL_S` and, once it answers, replays the spool through the normal accept path
with the ids the deliveries were answered with. Dedup keys and those preassigned ids make a replay of
anything already stored a no-op, so a crash mid-drain neither loses nor doubles an event.

Ordering: the spool is replayed in the order it was written. Deliveries arriving after Redis is back go
straight to Redis while the drain catches up, so for a moment a newer event can be queued before an older
spooled one (its id, from its arrival time, still sorts it correctly in the event log); the GitOps rules
never move a workload backwards, so a late older event does no harm. A copy of a delivery that was spooled
is answered 202 from the spool, and turns out a duplicate only at replay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from redis.exceptions import RedisError

from broker import keys, metrics
from broker.settings import Settings
from broker.spool import Journal, Line, SpoolEntry, SpoolFull, SpoolLocked
from broker.store import Accepted, EventStore, assign_event_ids
from broker.store_accept import redis_unavailable
from handlers.models import Incoming

log = logging.getLogger(__name__)

# Deliveries replayed at once (they share one Redis call); the replayed offset is recorded after each chunk.
REPLAY_CHUNK = 64


class CannotPersist(Exception):
    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Persisted:
    accepted: Accepted
    spooled: bool


class RedisLink:
    """What the web tier believes about Redis right now."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.down_since: float | None = None

    @property
    def up(self) -> bool:
        return self.error is None

    def lost(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else f"{type(exc).__name__} (no answer in time)"
        if self.up:
            log.error("Redis unavailable (%s): spooling webhooks locally until it takes writes", reason)
            self.down_since = time.monotonic()
        self.error = reason

    def restored(self) -> None:
        if not self.up:
            log.warning("Redis takes writes again after %.1f s", time.monotonic() - (self.down_since or 0))
        self.error = None
        self.down_since = None


class Intake:
    def __init__(self, store: EventStore, journal: Journal | None, settings: Settings) -> None:
        self.store = store
        self.journal = journal
        self.settings = settings
        self.link = RedisLink()
        self.wake = asyncio.Event()

    # --- the intake path -----------------------------------------------------------------------------

    async def persist(self, incoming: Sequence[Incoming], received_at: datetime) -> Persisted:
        """Persist one delivery, in Redis or else in the spool; CannotPersist when neither works."""
        ids = assign_event_ids(received_at, len(incoming))
        if self.link.up:
            try:
                # Within the store's deadline for Redis (see AcceptBatcher).
                accepted = await self.store.accept(incoming, received_at=received_at, event_ids=ids)
                return Persisted(accepted, spooled=False)
            except (RedisError, OSError) as exc:
                metrics.REDIS_ERRORS.labels("intake").inc()
                if not redis_unavailable(exc):
                    # Redis answered and refused this delivery: spooling it would only replay the refusal.
                    log.error("Redis refused a delivery: %s", exc)
                    raise CannotPersist(
                        "Redis refused to store this delivery; retry later", self.settings.spool_retry_after_s
                    ) from None
                self.link.lost(exc)
        if self.journal is None:
            raise CannotPersist(
                "cannot persist the event right now; retry later", self.settings.spool_retry_after_s
            )
        entry = SpoolEntry(received_at=received_at, event_ids=ids, events=list(incoming))
        try:
            await self.journal.append(entry.line())
        except SpoolFull:
            raise CannotPersist(
                "Redis is unavailable and the local spool is full; retry later",
                self.settings.spool_retry_after_s,
            ) from None
        except OSError as exc:
            raise CannotPersist(
                f"Redis is unavailable and the local spool cannot be written ({exc.strerror})",
                self.settings.spool_retry_after_s,
            ) from None
        metrics.SPOOL.labels("spooled").inc()
        statuses: list[str] = [item.initial_status for item in incoming]
        return Persisted(Accepted(event_ids=ids, statuses=statuses), spooled=True)

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for /readyz, from the current belief about Redis and the spool."""
        spool: dict[str, Any] = {"enabled": self.journal is not None}
        if self.journal is not None:
            spool |= {"pending_bytes": self.journal.pending_bytes, "max_bytes": self.journal.max_bytes}
        if self.link.up:
            return 200, {"status": "ready", "redis": "ok", "spool": spool}
        body = {"redis": f"unavailable: {self.link.error}", "spool": spool}
        if self.journal is not None and self.journal.free_bytes >= self._room_needed():
            # Still taking webhooks (into the spool): stay in the Service, say so.
            return 200, {"status": "degraded", **body}
        return 503, {"status": "unavailable", **body}

    def _room_needed(self) -> int:
        assert self.journal is not None
        return min(self.settings.max_body_bytes, self.journal.max_bytes // 2)

    # --- the drain -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: re-check a lost Redis, replay the spool while Redis answers."""
        while True:
            try:
                if not self.link.up:
                    await self.probe()
                if self.journal is not None and self.journal.pending_bytes:
                    await self.drain()
            except (RedisError, OSError, TimeoutError) as exc:  # what `probe` and `persist` take as lost
                self.link.lost(exc)
            except Exception:
                log.exception("spool drain failed; retrying")
            if self.journal is not None:
                metrics.SPOOL_PENDING_BYTES.set(self.journal.pending_bytes)
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.settings.redis_probe_interval_s)

    async def probe(self) -> None:
        """Ask Redis, within the deadline; update the belief either way (RedisError/TimeoutError raised).
        Once lost, Redis counts as back only when it takes a write: out of memory, or a read-only
        replica, it still answers PING."""
        try:
            async with asyncio.timeout(self.settings.redis_timeout_s):
                if self.link.up:
                    await self.store.redis.ping()
                else:
                    await self.store.probe_write()
        except (RedisError, OSError, TimeoutError) as exc:
            self.link.lost(exc)
            raise
        self.link.restored()

    async def drain(self) -> int:
        """Replay every complete segment in order; RedisError stops it where it got to."""
        assert self.journal is not None
        replayed = 0
        for segment in await self.journal.seal():
            read = await asyncio.to_thread(self.journal.read, segment)
            if read.lines:
                log.info("replaying %d spooled deliveries from %s", len(read.lines), segment.name)
            for start in range(0, len(read.lines), REPLAY_CHUNK):
                chunk = read.lines[start : start + REPLAY_CHUNK]
                outcomes = await asyncio.gather(
                    *(self._replay(line) for line in chunk), return_exceptions=True
                )
                failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
                done = len(chunk) if failure is None else outcomes.index(failure)
                if done:
                    await asyncio.to_thread(self.journal.record_offset, segment, chunk[done - 1].end)
                    replayed += done
                if failure is not None:
                    raise failure
            if read.torn_tail:
                log.warning(
                    "skipped %d bytes of an unfinished write at the end of %s", read.torn_tail, segment.name
                )
            await asyncio.to_thread(self.journal.finish, segment)
        return replayed

    async def _replay(self, line: Line) -> None:
        assert self.journal is not None
        try:
            entry = SpoolEntry.model_validate_json(line.data)
        except ValidationError as exc:
            await asyncio.to_thread(
                self.journal.reject, line.data, f"undecodable ({exc.error_count()} errors)"
            )
            metrics.SPOOL.labels("rejected").inc()
            return
        try:
            accepted = await self.store.accept(
                entry.events, received_at=entry.received_at, event_ids=entry.event_ids
            )
        except RedisError as exc:
            if redis_unavailable(exc):
                raise
            # Refused for what it holds (Redis is up): it would block every line behind it.
            await asyncio.to_thread(self.journal.reject, line.data, f"Redis refused it: {exc}")
            metrics.SPOOL.labels("rejected").inc()
            return
        if accepted.duplicate_of is None:
            metrics.SPOOL.labels("replayed").inc()
        elif accepted.duplicate_of == entry.event_ids[0]:
            metrics.SPOOL.labels("already_stored").inc()
        else:
            metrics.SPOOL.labels("duplicate").inc()
            log.info("spooled event %s was a duplicate of %s", entry.event_ids[0], accepted.duplicate_of)


INTAKE: web.AppKey[Intake] = web.AppKey("intake", Intake)


def open_journal(settings: Settings) -> Journal | None:
    if settings.spool_max_bytes <= 0:
        log.warning("BROKER_SPOOL_MAX_BYTES=0: no spool, webhooks get 503 while Redis is unreachable")
        return None
    journal = Journal(
        settings.data_dir / "spool",
        max_bytes=settings.spool_max_bytes,
        segment_bytes=settings.spool_segment_bytes,
    )
    try:
        journal.open()
    except (SpoolLocked, OSError) as exc:
        log.error("no spool (%s): webhooks get 503 while Redis is unreachable", exc)
        return None
    return journal


async def intake_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context (after the Redis one): the intake, its spool and the drain task."""
    journal = open_journal(app[keys.SETTINGS])
    intake = Intake(app[keys.STORE], journal, app[keys.SETTINGS])
    app[INTAKE] = intake
    task = asyncio.create_task(intake.run(), name="spool-drain")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if journal is not None:
        journal.close()

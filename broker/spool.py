"""The intake spool: a local append-only journal that takes authentic webhooks while Redis is unreachable.

Layout under `BROKER_DATA_DIR/spool/`: `segment-<seq>.jsonl` files, one JSON line per delivery (its parsed
events, their preassigned ids and the time it was received), `segment-<seq>.offset` recording how far a
segment has been replayed, and `lock`, held with flock by the one process that owns the directory.

Durability: appends are written and fsync'd before the caller answers 202; appends that arrive while a
write is in flight are written together with one fsync (group commit). A failed write is truncated away
so a torn line never precedes a good one. The drain seals the active segment first (new appends open the
next one), replays sealed segments in order, records offsets as it goes and deletes a segment once it
is fully replayed. A crash anywhere re-replays at most the lines since the last recorded offset; the
store recognises those (their event record already exists), so nothing is lost or doubled. Only the
last line of a sealed segment can be torn (a write that never got its fsync, hence never a 202): it is
skipped. A line that cannot be decoded, or that Redis refuses (broker/spool_drain.py), is set aside in
`rejected.jsonl` for ops, never dropped silently.

This module does file I/O only; broker/spool_drain.py decides when to spool and replays into Redis."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator

from broker.group_commit import GroupCommit
from handlers.models import Incoming

log = logging.getLogger(__name__)

SEGMENT_NAME = "segment-{seq:012d}.jsonl"
SEGMENT_PATTERN = re.compile(r"^segment-(\d{12})\.jsonl$")
REJECTED_NAME = "rejected.jsonl"


class SpoolEntry(BaseModel):
    """One authentic delivery, exactly what EventStore.accept needs to persist it later."""

    received_at: datetime
    event_ids: list[str]
    events: list[Incoming]

    @field_validator("events", mode="before")
    @classmethod
    def _payload_as_json(cls, events: Any) -> Any:
        """Spools written before payloads were kept as JSON text hold them as objects: still replayed."""
        return [_with_payload_json(item) for item in events] if isinstance(events, list) else events

    def line(self) -> bytes:
        return self.model_dump_json().encode() + b"\n"


def _with_payload_json(item: Any) -> Any:
    if isinstance(item, dict) and "payload" in item and "payload_json" not in item:
        fields = {key: value for key, value in item.items() if key != "payload"}
        return {**fields, "payload_json": json.dumps(item["payload"])}
    return item


class SpoolFull(Exception):
    """The journal is at its size cap."""


class SpoolLocked(Exception):
    """Another process owns this spool directory."""


@dataclass(frozen=True)
class Line:
    end: int  # offset just past this line: where a replay resumes once it is persisted
    data: bytes


@dataclass(frozen=True)
class SegmentRead:
    lines: list[Line]
    torn_tail: int  # bytes after the last newline (a write that never completed)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Journal:
    """The spool directory of one process. Appends and seals run on the event loop (file work in a
    thread); reads, offsets and deletions are called by the drain, one at a time."""

    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock_fd: int | None = None
        self._size = 0  # bytes in segment files on disk (replayed or not, until deleted)
        self._queued = 0  # bytes waiting for the writer
        self._next_seq = 1
        self._active_fd: int | None = None
        self._active_size = 0
        self._appends: GroupCommit[bytes, None] = GroupCommit(self._write_lines)
        self._io = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLocked(f"{self.directory} is in use by another process") from None
        self._lock_fd = fd
        segments = self.segments()
        self._size = sum(path.stat().st_size for path in segments)
        self._next_seq = (_seq(segments[-1]) + 1) if segments else 1
        if segments:
            log.warning("spool holds %d bytes from before start-up: replaying when Redis answers", self._size)

    def close(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # --- state ---------------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self._size + self._queued

    @property
    def free_bytes(self) -> int:
        return max(0, self.max_bytes - self.pending_bytes)

    def segments(self) -> list[Path]:
        found = [path for path in self.directory.iterdir() if SEGMENT_PATTERN.match(path.name)]
        return sorted(found, key=_seq)

    # --- appending -----------------------------------------------------------------------------------

    async def append(self, line: bytes) -> None:
        """Return once `line` is on disk (fsync'd). SpoolFull at the cap; OSError if the disk fails."""
        if self._lock_fd is None:
            raise SpoolLocked("the spool is not open")
        if self.pending_bytes + len(line) > self.max_bytes:
            raise SpoolFull(f"the spool is at its {self.max_bytes}-byte cap")
        self._queued += len(line)
        await self._appends.submit(line)

    async def _write_lines(self, lines: list[bytes]) -> list[Exception | None]:
        """Write and fsync the lines appended while the last write was under way, together."""
        data = b"".join(lines)
        try:
            async with self._io:
                await asyncio.to_thread(self._write, data)
        except OSError as exc:
            log.error("spool write failed: %s", exc)
            return [OSError(exc.errno, f"spool write failed: {exc.strerror}") for _ in lines]
        else:
            self._size += len(data)
            self._active_size += len(data)
            return [None] * len(lines)
        finally:
            self._queued -= len(data)

    def _write(self, data: bytes) -> None:
        if self._active_fd is None or self._active_size >= self.segment_bytes:
            self._open_segment()
        assert self._active_fd is not None
        start = self._active_size
        try:
            _write_all(self._active_fd, data)
            os.fsync(self._active_fd)
        except OSError:
            # Cut the partial write off so the next good line does not follow garbage; failing that,
            # abandon the segment (its torn tail is skipped when it is replayed).
            try:
                os.ftruncate(self._active_fd, start)
                os.fsync(self._active_fd)
            except OSError:
                os.close(self._active_fd)
                self._active_fd = None
            raise

    def _open_segment(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
        path = self.directory / SEGMENT_NAME.format(seq=self._next_seq)
        self._next_seq += 1
        self._active_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._active_size = 0
        _fsync_dir(self.directory)

    async def seal(self) -> list[Path]:
        """Close the active segment (after any write in flight) and list the segments on disk, all of
        them complete now: later appends open a segment that is not in this list."""
        async with self._io:
            if self._active_fd is not None:
                os.close(self._active_fd)
                self._active_fd = None
                self._active_size = 0
            return self.segments()

    # --- replaying (called by the drain) -------------------------------------------------------------

    def read(self, segment: Path) -> SegmentRead:
        """The complete lines of a sealed segment after its recorded offset."""
        start = self.replayed_offset(segment)
        with segment.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
        lines: list[Line] = []
        position = 0
        while True:
            newline = data.find(b"\n", position)
            if newline < 0:
                break
            lines.append(Line(end=start + newline + 1, data=data[position:newline]))
            position = newline + 1
        return SegmentRead(lines=lines, torn_tail=len(data) - position)

    def replayed_offset(self, segment: Path) -> int:
        try:
            return int(_offset_path(segment).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def record_offset(self, segment: Path, offset: int) -> None:
        path = _offset_path(segment)
        scratch = path.with_suffix(".offset.tmp")
        with scratch.open("w") as handle:
            handle.write(str(offset))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)

    def finish(self, segment: Path) -> None:
        """Delete a fully replayed segment and its offset."""
        size = segment.stat().st_size
        segment.unlink()
        with contextlib.suppress(FileNotFoundError):
            _offset_path(segment).unlink()
        _fsync_dir(self.directory)
        self._size -= size

    def reject(self, line: bytes, reason: str) -> None:
        """Keep a line that cannot be replayed (undecodable, or refused by Redis) for ops, not drop it."""
        with (self.directory / REJECTED_NAME).open("ab") as handle:
            handle.write(line.rstrip(b"\n") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        log.error("spool line set aside in %s: %s", REJECTED_NAME, reason)


def _seq(path: Path) -> int:
    match = SEGMENT_PATTERN.match(path.name)
    assert match, path
    return int(match.group(1))


def _offset_path(segment: Path) -> Path:
    return segment.with_suffix(".offset")

"""rq jobs about one event, stamped from a template that rq itself wrote.

Why: building each job with rq (`Job.create`, its serializer lookup, `to_dict`, `enqueue_job`) cost more
CPU on the intake path than anything else the broker does for a webhook. Yet the jobs the broker queues
for one (queue, function, retry policy) differ only in their event id, their own id and the time. So rq
enqueues the job twice, for two sentinel events, into a command recorder; the arguments that differ
between the two recordings are the per-job slots, and everything else stays rq's own bytes. A slot that is
none of the three kinds understood here (an rq upgrade adding a per-job field) fails when the template is
built rather than writing a wrong job; tests/test_job_template.py checks that a stamped job is the job rq
writes, and that a worker runs it."""

from __future__ import annotations

import random
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from rq import Callback, Queue, Retry
from rq.serializers import DefaultSerializer
from rq.utils import utcformat, utcparse

from broker.store_accept import UNDOABLE, CommandRecorder
from broker.utc_text import SecondText

EVENT_JOB_TIMEOUT_S = 600

# Two (event id, job id suffix) pairs no real id can contain: ULIDs never hold I, L, O or U, and the
# suffixes are hex.
_SENTINELS = (("EVENTIDLOUEVENTIDLOU", "SUFFIXLOUSUFFIXLOU"), ("EVENTIDUOLEVENTIDUOL", "SUFFIXUOLSUFFIXUOL"))


class _Stamp(NamedTuple):
    """The per-job values for one job."""

    event_id: str
    job_suffix: str
    at: str
    data: bytes


Slot = Callable[[_Stamp], Any]


def _is_timestamp(value: Any) -> bool:
    try:
        utcparse(value)
    except (TypeError, ValueError):
        return False
    return True


def _call_data(func: str, event_id: str) -> bytes:
    """The job's `data` as rq stores it: its call, pickled by rq's default serializer, in a zlib stream.
    The pickle is ~80 bytes, so the stream holds it as one stored (uncompressed) block (RFC 1950/1951):
    `zlib.compress` would spend more setting up its compressor than the rest of the job costs."""
    call = DefaultSerializer.dumps((func, None, (event_id,), {}))
    size = len(call)
    if size > 0xFFFF:  # beyond one stored block
        return zlib.compress(call)
    stored_block = b"\x01" + struct.pack("<HH", size, size ^ 0xFFFF)
    return b"\x78\x01" + stored_block + call + struct.pack(">I", zlib.adler32(call))


def _as_text(arg: Any) -> Any:
    """Numbers as the decimal text Redis receives for them (what redis-py's encoder sends)."""
    return repr(arg) if isinstance(arg, int | float) and not isinstance(arg, bool) else arg


_SECONDS = SecondText()


def rq_time(epoch_us: int) -> str:
    """A UTC moment, in microseconds since the epoch, as rq's `utcformat` writes it."""
    second, microsecond = divmod(epoch_us, 1_000_000)
    return f"{_SECONDS(second)}.{microsecond:06d}Z"


def _decompressed(value: bytes) -> bytes | None:
    try:
        return zlib.decompress(value)
    except zlib.error:
        return None


def _slot(first: Any, second: Any, func: str) -> Slot:
    """How one argument that differs between the two recordings is filled in for a job."""
    (event_a, suffix_a), (event_b, suffix_b) = _SENTINELS
    if isinstance(first, str) and first.replace(event_a, event_b).replace(suffix_a, suffix_b) == second:
        return lambda stamp: first.replace(event_a, stamp.event_id).replace(suffix_a, stamp.job_suffix)
    if _is_timestamp(first) and _is_timestamp(second):
        return lambda stamp: stamp.at
    if isinstance(first, bytes) and _decompressed(first) == _decompressed(_call_data(func, event_a)):
        return lambda stamp: stamp.data
    raise RuntimeError(f"rq writes a per-job value the job template does not understand: {first!r}")


def _record(
    queue: Queue, func: str, event_id: str, suffix: str, retry: Retry | None, on_failure: str | None
) -> list[tuple[Any, ...]]:
    recorder: Any = CommandRecorder()  # stands in for the pipeline rq expects
    job = queue.create_job(
        func,
        args=(event_id,),
        job_id=f"event-{event_id}-{suffix}",
        timeout=EVENT_JOB_TIMEOUT_S,
        retry=retry,
        on_failure=Callback(on_failure) if on_failure else None,
    )
    queue.enqueue_job(job, pipeline=recorder)
    return [tuple(map(_as_text, command)) for command in _merge_hsets(recorder.commands)]


def _merge_hsets(commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """rq sets a new job's status, then saves every field (the status again among them), a third of them
    empty strings. One HSET on the job's key, without the empty fields, does the same for less on every
    webhook: rq reads a missing field as it reads an empty one (`Job.restore`: `obj.get(name)` falsy)."""
    merged: list[tuple[Any, ...]] = []
    for command in commands:
        previous = merged[-1] if merged else None
        if previous and command[0] == previous[0] == "HSET" and command[1] == previous[1]:
            merged[-1] = (*previous, *command[2:])
        else:
            merged.append(command)
    return [_without_empty_fields(command) if command[0] == "HSET" else command for command in merged]


def _without_empty_fields(hset: tuple[Any, ...]) -> tuple[Any, ...]:
    fields = dict(zip(hset[2::2], hset[3::2], strict=True))  # the last value of a repeated field wins
    return (*hset[:2], *(item for pair in fields.items() if pair[1] != "" for item in pair))


class JobTemplate:
    """Queues `func(event_id)` jobs with id `event-<event id>-<16 random hex digits>`, as rq would."""

    def __init__(self, queue: Queue, func: str, retry: Retry | None, on_failure: str | None) -> None:
        self.func = func
        (event_a, suffix_a), (event_b, suffix_b) = _SENTINELS
        first = _record(queue, func, event_a, suffix_a, retry, on_failure)
        stamp_a = utcformat(datetime.now(UTC))
        while utcformat(datetime.now(UTC)) == stamp_a:  # so that the timestamps differ too
            pass
        second = _record(queue, func, event_b, suffix_b, retry, on_failure)
        if [len(command) for command in first] != [len(command) for command in second]:
            raise RuntimeError("rq writes jobs whose shape depends on the job")
        # The accept script gets every argument as text (store_accept.pack_delivery): a None would shift
        # the arguments of the command it is in, so it is refused here, once, rather than checked per job.
        untyped = [arg for command in first for arg in command if not isinstance(arg, str | bytes)]
        if untyped:
            raise RuntimeError(f"rq writes job values that are not text: {untyped!r}")
        # A delivery Redis refuses part-way has its writes undone by the accept script, command by command.
        beyond_undo = {command[0] for command in first} - UNDOABLE
        if beyond_undo:
            raise RuntimeError(f"rq writes jobs with commands the accept script cannot undo: {beyond_undo}")
        # Each command with the slots to fill in it; a command without any is sent as rq wrote it.
        self._plan: list[tuple[tuple[Any, ...], list[tuple[int, Slot]]]] = [
            (
                command_a,
                [
                    (position, _slot(one, two, func))
                    for position, (one, two) in enumerate(zip(command_a, command_b, strict=True))
                    if one != two
                ],
            )
            for command_a, command_b in zip(first, second, strict=True)
        ]

    def commands(self, event_id: str) -> list[Sequence[Any]]:
        stamp = _Stamp(
            event_id=event_id,
            job_suffix=f"{random.getrandbits(64):016x}",  # unique is all it must be
            at=rq_time(time.time_ns() // 1000),
            data=_call_data(self.func, event_id),
        )
        commands: list[Sequence[Any]] = []
        for command, slots in self._plan:
            if slots:
                filled = list(command)
                for position, fill in slots:
                    filled[position] = fill(stamp)
                command = tuple(filled)
            commands.append(command)
        return commands

    def enqueue(self, pipe: Any, event_id: str) -> None:
        """Queue the job's writes on `pipe`: a sync or async pipeline, or a CommandRecorder."""
        for command in self.commands(event_id):
            pipe.execute_command(*command)


class JobTemplates:
    """One template per (queue, function, retry policy, failure callback), built on first use."""

    def __init__(self) -> None:
        self._templates: dict[tuple[Any, ...], JobTemplate] = {}

    def get(self, queue: Queue, func: str, retry: Retry | None, on_failure: str | None) -> JobTemplate:
        key = (queue.key, func, _retry_key(retry), on_failure)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = JobTemplate(queue, func, retry, on_failure)
        return template


def _retry_key(retry: Retry | None) -> tuple[int, Sequence[int]] | None:
    return None if retry is None else (retry.max, tuple(retry.intervals))


TEMPLATES = JobTemplates()

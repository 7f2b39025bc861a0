"""How intake writes reach Redis: one Lua script call applies a delivery's writes (event record, indexes,
change entry, rq job, dedup keys) after checking its dedup keys, and concurrent deliveries share one call.

Why a script and not WATCH + MULTI/EXEC: that costs three round trips and ~25 commands whose replies are
parsed one by one in Python; redis-py's asyncio client spends more CPU per command than Redis spends
running it. Here the writes are recorded as plain commands (the event's by broker/store.py, the rq job's
stamped from what rq itself wrote: broker/job_template.py), sent as one MessagePack argument per delivery,
and applied by the script, which runs atomically like MULTI/EXEC and is recorded in the AOF by its
effects.
Deliveries arriving while a call is in flight wait for it and then go together (group commit); each stays
all-or-nothing on its own. Standalone Redis only (the keys one call writes span hash slots), as rq
itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import msgpack
import redis.asyncio as aredis
from redis import exceptions as redis_errors
from redis.commands import CoreCommands
from redis.connection import BaseParser

from broker.group_commit import GroupCommit

# ARGV: one entry per delivery, each a MessagePack array [keys, first event id, commands]: its dedup keys
# then its first event's key, and its writes as arrays of arguments. Answers a MessagePack array (one
# reply for redis-py to parse instead of one per delivery), one entry per delivery: false when written,
# the event id it duplicates (its own id when its record is already there: a re-drained spool entry), or
# [error text] when Redis refused one of its writes.
# A dedup key pointing at the delivery's own id does not count, so a delivery whose writes were cut short
# is completed on replay; the first event's record is written last.
# Each delivery is all or nothing on its own: Redis applies a script's writes up to an error and keeps
# them, so a delivery whose write Redis refuses (a key of the wrong type, out of memory) has the writes
# it made undone, in reverse, and the others in the call go on. Every command the intake records has its
# inverse here (UNDOABLE); the keys it SETs or HSETs are its own (fresh ids, or its dedup keys when no
# other delivery holds them), so deleting them restores what was there. SADD only adds a name to a
# registry (of queues, of index keys) that other entries share: it is kept.
# MessagePack because it is packed in C on both sides (Redis embeds cmsgpack): a delivery is one argument
# instead of a hundred, each of which redis-py would frame in Python and Redis parse. The keys travel in
# it too rather than as KEYS: the writes name keys of their own anyway (standalone Redis only, as rq).
ACCEPT_SCRIPT = """
local function undo(commands, applied, stream_ids)
  for i = applied, 1, -1 do
    local command = commands[i]
    local name, key = command[1], command[2]
    if name == 'SET' or name == 'HSET' then
      redis.call('DEL', key)
    elseif name == 'ZADD' then
      for j = 4, #command, 2 do redis.call('ZREM', key, command[j]) end
    elseif name == 'RPUSH' then
      for j = 3, #command do redis.call('LREM', key, -1, command[j]) end
    elseif name == 'XADD' then
      redis.call('XDEL', key, stream_ids[i])
    elseif name ~= 'SADD' then
      error('the accept script cannot undo ' .. name)
    end
  end
end

local results = {}
for d = 1, #ARGV do
  local commands, applied, stream_ids = {}, 0, {}
  local ok, outcome = pcall(function()
    local delivery = cmsgpack.unpack(ARGV[d])
    local keys, own = delivery[1], delivery[2]
    commands = delivery[3]
    local found = redis.call('MGET', unpack(keys))
    for i = 1, #keys - 1 do
      if found[i] and found[i] ~= own then return found[i] end
    end
    if found[#keys] then return own end
    for i, command in ipairs(commands) do
      local reply = redis.call(unpack(command))
      applied = i
      if command[1] == 'XADD' then stream_ids[i] = reply end
    end
    return false
  end)
  if not ok then
    undo(commands, applied, stream_ids)
    outcome = {type(outcome) == 'table' and outcome.err or tostring(outcome)}
  end
  results[d] = outcome
end
return cmsgpack.pack(results)
"""
# The commands ACCEPT_SCRIPT can undo; JobTemplate refuses an rq whose jobs need any other.
UNDOABLE = frozenset({"SET", "HSET", "ZADD", "RPUSH", "XADD", "SADD"})

MAX_BATCH = 64
MAX_BATCH_BYTES = 2 * 1024 * 1024

# Redis taking no writes at all, whatever is sent: unreachable, hung, or answering that it cannot write.
UNREACHABLE = (TimeoutError, OSError, redis_errors.ConnectionError, redis_errors.TimeoutError)
CANNOT_WRITE = (redis_errors.ReadOnlyError, redis_errors.OutOfMemoryError)
_NO_WRITES = UNREACHABLE + CANNOT_WRITE


def redis_unavailable(exc: BaseException) -> bool:
    """True when no write could succeed right now (so a delivery should wait in the spool): Redis is
    unreachable, a read-only replica (after a failover), or out of memory. Any other error Redis answers is
    about what was sent. Redis 6 reports a refused write inside a script as a script error quoting it,
    which redis-py cannot map to its class: hence the text test."""
    if isinstance(exc, _NO_WRITES):
        return True
    return isinstance(exc, redis_errors.ResponseError) and any(
        f"-{code} " in str(exc) for code in ("OOM", "READONLY")
    )


class CommandRecorder(CoreCommands):
    """Stands in for a transaction pipeline: every command queued on it (ours, and rq's when a job
    template is recorded) is kept as its exact argument list, in order, for ACCEPT_SCRIPT."""

    explicit_transaction = True  # rq asks, to decide whether to call multi()
    _event_dispatcher = None  # type: ignore[assignment]  # no client events: nothing is sent from here

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []

    def multi(self) -> None:
        pass

    def execute_command(self, *args: Any, **options: Any) -> CommandRecorder:
        self.commands.append(args)
        return self

    def move_to_end(self, command: str, key: str) -> None:
        """Apply the first `command` on `key` last (the record whose presence means "all written")."""
        for index, args in enumerate(self.commands):
            if args[0] == command and args[1] == key:
                self.commands.append(self.commands.pop(index))
                return


def pack_delivery(keys: list[str], first_id: str, writes: CommandRecorder) -> bytes:
    """A delivery as ACCEPT_SCRIPT reads it. Every argument of every command must be text (str or bytes;
    numbers in decimal, as Redis receives them anyway): a None would arrive as nil and shift the arguments
    of its command, so the writers pass text only and JobTemplate refuses rq values that are not. Both go
    as MessagePack's raw strings: the cmsgpack in Redis predates the bin types."""
    return msgpack.packb([keys, first_id, writes.commands], use_bin_type=False)


class AcceptBatcher:
    """Runs ACCEPT_SCRIPT for every submitted delivery, one call in flight at a time: what arrives
    meanwhile goes in the next call (broker/group_commit.py). A failed call fails every delivery in it
    (each then takes its own fallback, e.g. the spool); deliveries in a call that Redis did apply are
    recognised on replay. What Redis refuses for one delivery fails that one alone, with its writes undone
    (ACCEPT_SCRIPT), as the error redis-py would have raised for the refused command: a key of the wrong
    type is about the delivery, out of memory or a read-only replica mean Redis takes no writes
    (`redis_unavailable`).

    Each call has a deadline of `timeout_s`, whatever redis-py's reconnects and retries add up to. When a
    call times out or loses its connection, the deliveries waiting for the next call fail with it: Redis
    is unreachable for them too, and so no delivery waits longer than about two deadlines. (One timer per
    call, not per delivery: on the intake path a timer each cost more than the rest of the wait.)"""

    def __init__(self, redis_client: aredis.Redis, timeout_s: float) -> None:
        # With one call in flight at a time, one connection of the client's pool is all this needs: kept
        # for good, it spares every call the pool's checkout and return (which probes the socket), a
        # quarter of the client's CPU per call. Same pool, same timeouts and retries; `aclose` returns it.
        pool = redis_client.connection_pool
        self._client = aredis.Redis(connection_pool=pool, single_connection_client=True)
        self._script = self._client.register_script(ACCEPT_SCRIPT)
        self._timeout_s = timeout_s
        self._calls: GroupCommit[bytes, bytes | None] = GroupCommit(self._run, take=_batch_size)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def submit(
        self, dedup_keys: Sequence[str], first_key: str, first_id: str, writes: CommandRecorder
    ) -> bytes | None:
        """None when written, else the event id the delivery duplicates."""
        return await self._calls.submit(pack_delivery([*dedup_keys, first_key], first_id, writes))

    async def _run(self, batch: list[bytes]) -> list[bytes | Exception | None]:
        try:
            results = await self._call(batch)
        except Exception as exc:
            # Redis unavailable: the deliveries waiting for the next call would fail the same way. Any
            # failure fails this call's deliveries (GroupCommit): a refusal of one delivery comes back
            # as its result instead.
            if redis_unavailable(exc):
                self._calls.fail_waiting(exc)
            raise
        return [_outcome(result) for result in results]

    async def _call(self, batch: list[bytes]) -> list[bytes | Literal[False] | list[bytes]]:
        async with asyncio.timeout(self._timeout_s):
            reply = await self._script(args=batch)
        results: list[bytes | Literal[False] | list[bytes]] = msgpack.unpackb(reply, raw=True)
        return results


def _outcome(result: bytes | Literal[False] | list[bytes]) -> bytes | Exception | None:
    """A delivery's result from the script: None when written, the id it duplicates, or the error Redis
    refused one of its writes with, as redis-py would have raised it."""
    if isinstance(result, list):
        [refusal] = result
        return BaseParser.parse_error(refusal.decode(errors="replace"))
    return result or None


def _batch_size(waiting: Sequence[bytes]) -> int:
    """How many of the waiting deliveries one call takes: at most MAX_BATCH, and MAX_BATCH_BYTES."""
    size = 0
    count = 0
    for packed in waiting:
        size += len(packed)
        if count and (count == MAX_BATCH or size > MAX_BATCH_BYTES):
            break
        count += 1
    return count

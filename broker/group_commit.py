"""Group commit, as databases do it for their log: callers that arrive while a commit is under way wait
for it to end and then go together in the next one, so a burst pays one round trip (or one fsync) per
batch rather than per caller, and a lone caller pays no wait. The intake's writes to Redis
(broker/store_accept.py) and its spool appends (broker/spool.py) both go this way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# A commit answers each item of its batch, in order, with its result or the exception to raise for it.
Commit = Callable[[list[ItemT]], Awaitable[Sequence[ResultT | Exception]]]


class GroupCommit(Generic[ItemT, ResultT]):
    """Runs `commit` over what is submitted, one commit at a time. `take(waiting)` says how many of the
    waiting items the next commit takes (all, unless given). A commit that raises fails its whole batch
    with the exception; one that answers the wrong number of results, too (its items would otherwise
    wait forever)."""

    def __init__(self, commit: Commit[ItemT, ResultT], take: Callable[[Sequence[ItemT]], int] = len) -> None:
        self._commit = commit
        self._take = take
        # The waiting items and their callers' futures, side by side.
        self._items: list[ItemT] = []
        self._futures: list[asyncio.Future[ResultT]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> ResultT:
        done: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._futures.append(done)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await done

    def fail_waiting(self, exc: Exception) -> None:
        """Fail every item still waiting for a commit (the next would fail the same way)."""
        futures, self._items, self._futures = self._futures, [], []
        for done in futures:
            if not done.done():
                done.set_exception(exc)

    async def _run(self) -> None:
        while self._items:
            count = max(1, self._take(self._items))
            batch, self._items = self._items[:count], self._items[count:]
            futures, self._futures = self._futures[:count], self._futures[count:]
            try:
                outcomes = await self._commit(batch)
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"a commit of {len(batch)} answered {len(outcomes)} results")
            except asyncio.CancelledError:
                for done in [*futures, *self._futures]:
                    done.cancel()
                self._items, self._futures = [], []
                raise
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for done, outcome in zip(futures, outcomes, strict=True):
                if done.done():
                    continue
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

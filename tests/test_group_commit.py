"""GroupCommit: what arrives while a commit runs goes in the next one, each caller gets its own outcome, and
no caller is left waiting whatever the commit does."""

from __future__ import annotations

import asyncio

import pytest

from broker.group_commit import GroupCommit


class Recorder:
    """A commit that records its batches and holds each one until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def commit(self, batch: list[int]) -> list[int | Exception]:
        self.batches.append(batch)
        await self.release.wait()
        self.release.clear()
        return [ValueError(f"odd {item}") if item % 2 else item * 10 for item in batch]


async def settle(recorder: Recorder, calls: list[asyncio.Task[int]]) -> None:
    while not all(call.done() for call in calls):
        recorder.release.set()
        await asyncio.sleep(0)


async def test_what_arrives_during_a_commit_goes_together_in_the_next():
    recorder = Recorder()
    commits: GroupCommit[int, int] = GroupCommit(recorder.commit)
    first = asyncio.create_task(commits.submit(0))
    await asyncio.sleep(0.01)  # the first commit is under way, holding item 0
    later = [asyncio.create_task(commits.submit(item)) for item in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert recorder.batches == [[0]]

    await settle(recorder, [first, *later])

    assert recorder.batches == [[0], [2, 3, 4]]
    assert first.result() == 0 and later[0].result() == 20 and later[2].result() == 40
    with pytest.raises(ValueError, match="odd 3"):
        later[1].result()  # one item's failure is that item's alone


async def test_take_bounds_each_commit():
    recorder = Recorder()
    commits: GroupCommit[int, int] = GroupCommit(recorder.commit, take=lambda waiting: min(2, len(waiting)))
    calls = [asyncio.create_task(commits.submit(item)) for item in (0, 2, 4, 6, 8)]
    await settle(recorder, calls)
    assert recorder.batches == [[0, 2], [4, 6], [8]]
    assert [call.result() for call in calls] == [0, 20, 40, 60, 80]


async def test_a_commit_that_raises_fails_its_batch_and_the_next_goes_on():
    batches: list[list[str]] = []

    async def commit(batch: list[str]) -> list[str | Exception]:
        batches.append(batch)
        if "bad" in batch:
            raise ConnectionError("down")
        return [item.upper() for item in batch]

    commits: GroupCommit[str, str] = GroupCommit(commit, take=lambda waiting: 2)
    outcomes = await asyncio.gather(
        *(commits.submit(item) for item in ("bad", "a", "b")), return_exceptions=True
    )
    assert batches == [["bad", "a"], ["b"]]
    assert [type(outcome) for outcome in outcomes[:2]] == [ConnectionError, ConnectionError]
    assert outcomes[2] == "B"


async def test_a_commit_answering_the_wrong_number_of_results_fails_its_batch_loudly():
    async def commit(batch: list[int]) -> list[int | Exception]:
        return [1]

    commits: GroupCommit[int, int] = GroupCommit(commit)
    outcomes = await asyncio.gather(commits.submit(1), commits.submit(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "answered 1 results" in str(o) for o in outcomes)


async def test_fail_waiting_fails_only_those_not_yet_in_a_commit():
    recorder = Recorder()
    commits: GroupCommit[int, int] = GroupCommit(recorder.commit)
    running = asyncio.create_task(commits.submit(2))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(commits.submit(4))
    await asyncio.sleep(0.01)

    commits.fail_waiting(TimeoutError("Redis is unreachable"))
    await settle(recorder, [running, waiting])

    assert running.result() == 20
    with pytest.raises(TimeoutError):
        waiting.result()
    assert recorder.batches == [[2]], "the failed item never reached a commit"


async def test_cancelling_the_commit_cancels_every_caller_rather_than_strand_them():
    recorder = Recorder()
    commits: GroupCommit[int, int] = GroupCommit(recorder.commit)
    calls = [asyncio.create_task(commits.submit(item)) for item in (0, 2)]
    await asyncio.sleep(0.01)
    later = asyncio.create_task(commits.submit(4))
    await asyncio.sleep(0.01)
    runner = commits._runner
    assert runner is not None
    runner.cancel()
    await asyncio.gather(*calls, later, return_exceptions=True)
    assert all(call.cancelled() for call in [*calls, later])

"""Bursts of distinct, authentic deliveries mixed across the three senders, and a poster that sends them
concurrently: what the fault tests and the intake benchmark push through the real endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tests import payloads
from tests.conftest import DRONE_SECRET, GITEA_SECRET, HARBOR_AUTH
from tests.signing import drone_headers, gitea_headers, harbor_headers

SOURCES = ("gitea", "drone", "harbor")


@dataclass(frozen=True)
class Delivery:
    source: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def event_ids(self) -> list[str]:
        """Every event a 202 stands for (a Harbor delivery may carry several)."""
        return list(self.body.get("event_ids") or [self.body["event_id"]])


def signed_headers(source: str, body: bytes) -> dict[str, str]:
    """The headers `source` sends with `body`, signed with the test secrets."""
    if source == "gitea":
        return gitea_headers(body, GITEA_SECRET)
    if source == "drone":
        return drone_headers(body, DRONE_SECRET)
    return harbor_headers(HARBOR_AUTH)


def gitea_delivery(index: int, secret: str = GITEA_SECRET) -> Delivery:
    body = payloads.gitea_push(after=payloads.fake_sha(f"burst-{index}"), message=f"burst commit {index}\n")
    return Delivery("gitea", body, gitea_headers(body, secret, delivery=f"burst-{index}"))


def delivery(index: int) -> Delivery:
    """Delivery `index` of a burst: sources in turn, each distinct (none is a duplicate of another)."""
    source = SOURCES[index % len(SOURCES)]
    if source == "gitea":
        return gitea_delivery(index)
    if source == "drone":
        after = payloads.fake_sha(f"burst-{index}")
        body = payloads.drone_build(build_id=100_000 + index, number=index, after=after)
        return Delivery("drone", body, signed_headers("drone", body))
    digest = "sha256:" + hashlib.sha256(f"burst-{index}".encode()).hexdigest()
    body = payloads.harbor_push(tag=f"1.0.{index}", digest=digest)
    return Delivery("harbor", body, signed_headers("harbor", body))


Post = Callable[..., Any]


async def post_all(
    post: Post,
    deliveries: Sequence[Delivery],
    *,
    concurrency: int = 16,
    on_answer: Callable[[int], Awaitable[None]] | None = None,
) -> list[Answer]:
    """POST every delivery (`post` is an aiohttp client's or session's .post) with `concurrency` in flight;
    answers in delivery order. `on_answer(n)` runs after the n-th answer, to inject faults mid-burst."""
    answers: list[Answer | None] = [None] * len(deliveries)
    pending = iter(range(len(deliveries)))
    count = 0

    async def sender() -> None:
        nonlocal count
        for index in pending:
            item = deliveries[index]
            async with post(f"/hooks/{item.source}", data=item.body, headers=item.headers) as resp:
                answers[index] = Answer(resp.status, await resp.json(), dict(resp.headers))
            count += 1
            if on_answer is not None:
                await on_answer(count)

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return [answer for answer in answers if answer is not None]


async def wait_drained(client: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """Poll /readyz until Redis answers and the spool is empty; the last readiness body."""
    deadline = time.monotonic() + timeout_s
    while True:
        ready = await (await client.get("/readyz")).json()
        if ready["status"] == "ready" and ready["spool"]["pending_bytes"] == 0:
            return ready
        assert time.monotonic() < deadline, f"the spool never drained: {ready}"
        await asyncio.sleep(0.05)

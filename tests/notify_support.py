"""Test support for team notifications: a real HTTP receiver on 127.0.0.1 (aiohttp, in a background
thread with its own event loop, so the synchronous rq delivery job can call it from any test), and a
burst rq worker that also moves due scheduled retries, run until a condition holds."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from aiohttp import web
from rq import Queue, SimpleWorker
from rq.timeouts import TimerDeathPenalty
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from broker.settings import Settings

LOCAL_ONLY = ["127.0.0.1/32"]


def notify_settings(base: Settings, **overrides: Any) -> Settings:
    """Test settings: the local receiver allowed explicitly, short retries, a short timeout."""
    values: dict[str, Any] = {
        "notify_ssrf_allow": LOCAL_ONLY,
        "notify_retry_schedule": [0.1, 0.1],
        "notify_retry_jitter": 0.0,
        "notify_timeout_s": 1.0,
        "notify_dedup_window_s": 300.0,
        "notify_fold_window_s": 0.0,
    }
    values.update(overrides)
    return base.model_copy(update=values)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def verify(self, secret: str) -> Any:
        """The Standard Webhooks check a real receiver does; raises WebhookVerificationError."""
        return Webhook(secret).verify(self.body, self.headers)

    def verifies_with(self, secret: str) -> bool:
        try:
            self.verify(secret)
        except WebhookVerificationError:
            return False
        return True


class Receiver:
    """Answers each path with its queued replies (then 200), recording every request."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.received: list[Received] = []
        self._plans: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def plan(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._plans[path].extend(replies)

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append(Received(request.path, dict(request.headers), body))
            plan = self._plans[request.path]
            reply = plan.popleft() if plan else Reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, headers=reply.headers, text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class BurstWorker(SimpleWorker):
    """rq's in-process worker, usable from any thread (signals only work in the main thread)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def subscribe(self) -> None:
        """Without the listener for rq's remote commands: its shutdown can stall a burst round for 1 s."""


def run_worker(connection: redis.Redis, queue_names: Iterable[str], *, with_scheduler: bool = True) -> None:
    queues = [Queue(name, connection=connection) for name in queue_names]
    BurstWorker(queues, connection=connection).work(
        burst=True, with_scheduler=with_scheduler, logging_level="WARNING"
    )


def work_until(
    connection: redis.Redis,
    queue_names: Iterable[str],
    until: Callable[[], bool],
    timeout_s: float = 15.0,
    *,
    pause_s: float = 0.05,
    message: str = "condition not reached before the timeout",
) -> None:
    """Run burst workers (each also moving due scheduled retries) until `until()` holds."""
    names = list(queue_names)
    deadline = time.monotonic() + timeout_s
    while True:
        run_worker(connection, names)
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(pause_s)


# Fixtures for the notify test modules, which import them by these names (pytest registers them under
# `receiver` and `nsettings`; the distinct Python names keep the imports from shadowing test arguments).


@pytest.fixture(name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(name="nsettings")
def nsettings_fixture(settings: Settings) -> Settings:
    return notify_settings(settings)

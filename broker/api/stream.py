"""GET /api/v1/events/stream: Server-Sent Events, one `data:` JSON per event change, resumable with
Last-Event-ID (the Redis stream id of the last change seen). One background reader per web process
fans the change stream out to every connected client, so clients cost no Redis connection each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis
from aiohttp import web
from redis.exceptions import RedisError

from broker import keys
from broker.api.auth import authenticate
from broker.api.events import parse_filter
from broker.queue import async_redis
from broker.store import CHANGES_STREAM, EventFilter, text
from handlers.models import Event

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

HEARTBEAT_S = 15.0
BLOCK_MS = 5000
CLIENT_BUFFER = 1000


def now_id() -> str:
    """Stream ids are millisecond timestamps: "now" as an id means "every change from here on",
    without asking Redis (which may be down)."""
    return f"{int(time.time() * 1000)}-0"


class ChangeFanout:
    """Reads the change stream only while someone listens: decoding every change costs the intake
    ~10% of its CPU, for nothing when no page or CLI is tailing."""

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[tuple[str, Event] | None]] = set()
        self.last_id = now_id()
        self.running = True
        self.listened = asyncio.Event()

    def subscribe(self) -> asyncio.Queue[tuple[str, Event] | None]:
        queue: asyncio.Queue[tuple[str, Event] | None] = asyncio.Queue(CLIENT_BUFFER)
        if not self.listened.is_set():
            # Nobody listened until now: start from this moment (a client catches up on older changes
            # through Last-Event-ID, not through the fan-out).
            self.last_id = now_id()
            self.listened.set()
        self.clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, Event] | None]) -> None:
        self.clients.discard(queue)

    def end_all(self) -> None:
        """Tell every open stream to finish, so shutdown does not wait on long-lived responses."""
        for queue in list(self.clients):
            self.clients.discard(queue)
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    def publish(self, stream_id: str, event: Event) -> None:
        for queue in list(self.clients):
            try:
                queue.put_nowait((stream_id, event))
            except asyncio.QueueFull:
                # A client this far behind is cut loose; it reconnects with Last-Event-ID and catches up.
                self.clients.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    async def run(self, redis: aredis.Redis) -> None:
        # redis-py may turn a cancelled blocking read into a timeout error, so a flag ends the loop.
        while self.running:
            if not self.clients:
                self.listened.clear()
                await self.listened.wait()
                continue
            try:
                replies: Any = await redis.xread({CHANGES_STREAM: self.last_id}, block=BLOCK_MS, count=500)
            except RedisError as exc:
                if not self.running:
                    break
                log.warning("change stream read failed: %s", exc)
                await asyncio.sleep(1)
                continue
            entries: list[Any] = [entry for _stream, batch in replies or [] for entry in batch]
            for stream_id, fields in entries:
                self.last_id = text(stream_id)
                self.publish(self.last_id, Event.model_validate_json(fields[b"event"]))


FANOUT: web.AppKey[ChangeFanout] = web.AppKey("change_fanout")


async def fanout_ctx(app: web.Application) -> AsyncIterator[None]:
    fanout = ChangeFanout()
    app[FANOUT] = fanout
    app.on_shutdown.append(lambda _app: _end_streams(fanout))
    # Its own connection: a blocking XREAD must not hold one of the request pool's, and closing it is
    # what reliably interrupts the read at shutdown.
    reader = async_redis(app[keys.SETTINGS].redis_url or "", socket_timeout=BLOCK_MS / 1000 + 10)
    task = asyncio.create_task(fanout.run(reader))
    yield
    fanout.running = False
    task.cancel()
    await reader.connection_pool.disconnect(inuse_connections=True)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await reader.aclose()


async def _end_streams(fanout: ChangeFanout) -> None:
    fanout.end_all()


def sse_frame(stream_id: str, event: Event) -> bytes:
    data = event.model_dump_json(exclude={"payload", "headers"})
    return f"id: {stream_id}\nevent: change\ndata: {data}\n\n".encode()


@routes.get("/api/v1/events/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    principal = await authenticate(request)
    filters: EventFilter = parse_filter(request, principal)
    fanout = request.app[FANOUT]
    queue = fanout.subscribe()
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        last_sent = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        if last_sent:
            for stream_id, event in await request.app[keys.STORE].changes_since(last_sent):
                if filters.matches(event):
                    await response.write(sse_frame(stream_id, event))
                last_sent = stream_id
        await response.write(b": connected\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            stream_id, event = item
            if last_sent and _not_after(stream_id, last_sent):
                continue  # already sent from the backlog
            if filters.matches(event):
                await response.write(sse_frame(stream_id, event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        fanout.unsubscribe(queue)
    return response


def _not_after(stream_id: str, last: str) -> bool:
    def parts(value: str) -> tuple[int, int]:
        ms, _, seq = value.partition("-")
        return int(ms), int(seq or 0)

    try:
        return parts(stream_id) <= parts(last)
    except ValueError:
        return False

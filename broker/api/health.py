"""Liveness and readiness. /healthz says the process answers; /readyz says it can take webhooks.

/readyz answers 200 `ready` when Redis answers, 200 `degraded` when Redis is unavailable (unreachable, or
refusing writes: out of memory, a read-only replica) but the local spool still has room (webhooks are
fsync'd to the spool and replayed later, so the replica should stay in its Service: taking it out would
turn a Redis blip into lost deliveries from senders that never retry), and 503 `unavailable` when
neither works (no spool, or the spool is full)."""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from broker.spool_drain import INTAKE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    intake = request.app[INTAKE]
    try:
        await intake.probe()
    except (RedisError, OSError, TimeoutError):
        pass
    else:
        intake.wake.set()  # replay anything spooled now rather than at the next probe
    status, body = intake.readiness()
    return web.json_response(body, status=status)

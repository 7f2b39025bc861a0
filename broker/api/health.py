"""Liveness and readiness. /healthz says the process answers; /readyz says it can persist events."""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError

from broker import keys

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[keys.REDIS].ping()
    except (RedisError, OSError) as exc:
        return web.json_response(
            {"status": "unavailable", "redis": f"unreachable: {type(exc).__name__}"}, status=503
        )
    return web.json_response({"status": "ready", "redis": "ok"})

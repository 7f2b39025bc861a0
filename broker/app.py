"""The aiohttp application factory. It is handed its settings and reads no environment."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator

import redis
from aiohttp import web

from broker import keys
from broker.api import events, health, hooks, stream
from broker.api.errors import error_middleware
from broker.queue import async_redis, event_queue, retry_policy
from broker.settings import Settings
from broker.store import EventStore

# Route tables of the optional areas, registered when their module is present.
OPTIONAL_ROUTES = (
    "broker.api.deployments",
    "broker.api.teams",
    "broker.api.subscriptions",
    "broker.api.ops",
    "broker.api.ui",
)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    assert settings.redis_url, "create_app needs settings.redis_url (the CLI starts an embedded Redis)"
    client = async_redis(settings.redis_url)
    # rq builds jobs with a sync connection it never uses here: jobs are written on our async pipeline.
    queue = event_queue(settings, redis.Redis.from_url(settings.redis_url))
    app[keys.REDIS] = client
    app[keys.QUEUE] = queue
    app[keys.STORE] = EventStore(
        client,
        queue,
        retry=retry_policy(settings),
        dedup_ttl_s=settings.dedup_ttl_s,
        retention_s=int(settings.retention_days * 86400),
    )
    yield
    await client.aclose()
    queue.connection.close()


def create_app(settings: Settings) -> web.Application:
    # The hook reader enforces the body cap itself; this bound only stops other endpoints buffering more.
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes + 1)
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(stream.fanout_ctx)
    # The stream route must come before /events/{id}.
    for table in (health.routes, hooks.routes, stream.routes, events.routes):
        app.add_routes(table)
    for name in OPTIONAL_ROUTES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        app.add_routes(module.routes)
    return app

"""The aiohttp application factory. It is handed its settings and reads no environment."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aredis
from aiohttp import web
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from broker import keys, spool_drain
from broker.api import deployments, events, health, hooks, ops, pins, stream, subscriptions, teams, ui
from broker.api.errors import error_middleware
from broker.intake_limits import LIMITER, InflightLimiter
from broker.queue import async_redis, event_queue, retry_policy, sync_redis
from broker.settings import Settings
from broker.store import EventStore

MIN_REDIS_VERSION = (5, 0, 0)  # what rq assumes when Redis cannot be asked at start-up


def store_redis(settings: Settings) -> aredis.Redis:
    """The event store's client: short socket timeouts and one quick retry (the intake also puts one
    deadline on each whole call, see broker/store_accept.py), so a Redis that is down or hung costs a
    webhook about BROKER_REDIS_TIMEOUT_S (two at most) before it goes to the spool. Blocking reads such as
    the change stream's XREAD use the other client, whose socket has no timeout."""
    assert settings.redis_url
    return async_redis(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry=RedisRetry(ExponentialWithJitterBackoff(base=0.01, cap=0.05), retries=1),
    )


async def server_version(client: aredis.Redis, timeout_s: float) -> tuple[int, int, int]:
    try:
        async with asyncio.timeout(timeout_s):
            info = await client.info("server")
        major, minor, patch = [*str(info["redis_version"]).split("."), "0", "0"][:3]
        return int(major), int(minor), int(patch)
    except (RedisError, OSError, TimeoutError, KeyError, ValueError):
        return MIN_REDIS_VERSION


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    assert settings.redis_url, "create_app needs settings.redis_url (the CLI starts an embedded Redis)"
    client = async_redis(settings.redis_url)
    store_client = store_redis(settings)
    # rq builds jobs with a sync connection it never uses here: jobs are written on our async pipeline.
    queue = event_queue(settings, sync_redis(settings.redis_url))
    # Except once: rq asks the server version with a blocking INFO on the first enqueue (and again on
    # every enqueue until it succeeds), which would freeze the event loop while Redis hangs. Ask it here,
    # without blocking; rq uses it only in queue methods the web tier never calls.
    queue.redis_server_version = await server_version(store_client, settings.redis_timeout_s)
    app[keys.REDIS] = client
    app[keys.QUEUE] = queue
    app[keys.STORE] = EventStore(
        store_client,
        queue,
        retry=retry_policy(settings),
        dedup_ttl_s=settings.dedup_ttl_s,
        retention_s=int(settings.retention_days * 86400),
        accept_timeout_s=settings.redis_timeout_s,
    )
    yield
    await client.aclose()
    await app[keys.STORE].aclose()
    queue.connection.close()


def create_app(settings: Settings) -> web.Application:
    # The hook reader enforces the body cap itself; this bound only stops other endpoints buffering more.
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes + 1)
    app[keys.SETTINGS] = settings
    app[LIMITER] = InflightLimiter(settings.max_inflight, settings.max_inflight_bytes)
    app.cleanup_ctx.append(redis_ctx)
    app.cleanup_ctx.append(spool_drain.intake_ctx)
    app.cleanup_ctx.append(stream.fanout_ctx)
    # The stream route must come before /events/{id}.
    for module in (health, hooks, stream, events, deployments, teams, subscriptions, pins, ops, ui):
        app.add_routes(module.routes)
    return app

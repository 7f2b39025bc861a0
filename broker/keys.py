"""Every aiohttp AppKey in one place (typed application state)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import redis.asyncio as aredis
    from rq import Queue

    from broker.settings import Settings
    from broker.store import EventStore

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
REDIS: web.AppKey[aredis.Redis] = web.AppKey("redis")
STORE: web.AppKey[EventStore] = web.AppKey("store")
QUEUE: web.AppKey[Queue] = web.AppKey("queue")

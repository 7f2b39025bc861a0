"""Redis connections and rq queues, built from settings in one place."""

from __future__ import annotations

import redis
import redis.asyncio as aredis
from rq import Queue, Retry

from broker.settings import Settings


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, health_check_interval=30)


def async_redis(url: str) -> aredis.Redis:
    return aredis.Redis.from_url(url, health_check_interval=30)


def retry_policy(settings: Settings) -> Retry | None:
    retries = settings.max_attempts - 1
    return Retry(max=retries, interval=settings.retry_intervals[:retries] or 0) if retries > 0 else None


def event_queue(settings: Settings, connection: redis.Redis) -> Queue:
    return Queue(settings.queue_name, connection=connection)

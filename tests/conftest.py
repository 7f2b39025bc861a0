"""Shared fixtures. Tests talk to a real Redis (rq's way: one database index, flushed before and after each
test) and refuse to run without one: a missing Redis is a failure, never a skip."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aredis

from broker.queue import event_queue
from broker.settings import Settings
from broker.store import Accepted, EventStore, assign_event_ids
from handlers.models import Incoming

REDIS_HOST = os.environ.get("BROKER_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BROKER_TEST_REDIS_PORT", "6379"))
REDIS_DB = int(os.environ.get("BROKER_TEST_REDIS_DB", "9"))
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

GITEA_SECRET = "gitea-test-secret"
DRONE_SECRET = "drone-test-secret"
HARBOR_AUTH = "Bearer harbor-test-token"
ADMIN_TOKEN = "admin-test-token"


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # a missing service is a failure, not a skip
        pytest.fail(f"tests need a Redis at {REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def async_redis(sync_redis: redis.Redis) -> AsyncIterator[aredis.Redis]:
    client = aredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def settings(sync_redis: redis.Redis, tmp_path) -> Settings:
    return Settings(
        redis_url=REDIS_URL,
        data_dir=tmp_path / "data",
        gitea_secret=GITEA_SECRET,
        drone_secret=DRONE_SECRET,
        harbor_auth=HARBOR_AUTH,
        admin_token=ADMIN_TOKEN,
        retry_intervals=[0, 0, 0, 0],
    )


@pytest.fixture
async def client(aiohttp_client, settings: Settings):
    from broker.app import create_app

    return await aiohttp_client(create_app(settings))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def intake_store(settings: Settings, connection: redis.Redis) -> EventStore:
    """The web tier's event store over `settings.redis_url`, for tests that drive the intake without the
    app (`connection` builds the rq jobs). Close it with `await store.aclose()`."""
    return EventStore(
        aredis.Redis.from_url(settings.redis_url),
        event_queue(settings, connection),
        retry=None,
        dedup_ttl_s=60,
        retention_s=60,
        accept_timeout_s=settings.redis_timeout_s,
    )


async def accept_together(
    store: EventStore, deliveries: list[list[Incoming]]
) -> tuple[list[Accepted | BaseException], list[list[str]]]:
    """Each delivery's outcome (or error) and ids, all submitted in one loop turn: one script call."""
    now = datetime.now(UTC)
    ids = [assign_event_ids(now, len(delivery)) for delivery in deliveries]
    outcomes = await asyncio.gather(
        *(store.accept(d, received_at=now, event_ids=i) for d, i in zip(deliveries, ids, strict=True)),
        return_exceptions=True,
    )
    return outcomes, ids

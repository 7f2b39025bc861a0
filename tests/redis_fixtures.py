"""Fixtures for tests that stop and restart Redis, loaded as a plugin by the modules that need them
(`pytest_plugins = ("tests.redis_fixtures",)`): a redis-server of the test's own, never the shared one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.settings import Settings
from tests.redis_server import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (AOF, appendfsync always), not started: the test starts, kills and
    restarts it. Import it into a test module to use it."""
    server = RedisServer(tmp_path / "redis", appendfsync="always")
    yield server
    server.kill()


@pytest.fixture
def own_settings(settings: Settings, own_redis: RedisServer) -> Settings:
    """The test settings pointed at `own_redis`, re-checking a lost Redis every 50 ms."""
    return settings.model_copy(update={"redis_url": own_redis.url, "redis_probe_interval_s": 0.05})

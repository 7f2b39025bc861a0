"""BROKER_REDIS_URL in its Sentinel form, against a real redis-server and a real sentinel: the clients
find the master through the sentinel, and the URL parser reads every part."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis

from broker.queue import SentinelURL, async_redis, sync_redis
from tests.redis_server import RedisServer, free_port, redis_server_binary


@pytest.fixture
def sentinel_url(tmp_path: Path):
    with RedisServer(tmp_path / "master", appendonly=False) as master:
        port = free_port()
        config = tmp_path / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
            f"sentinel monitor broker-master 127.0.0.1 {master.port} 1\n"
        )
        proc = subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            probe = redis.Redis(port=port, socket_connect_timeout=0.5)
            deadline = time.monotonic() + 10
            while True:
                try:
                    if probe.sentinel_get_master_addr_by_name("broker-master"):
                        break
                except redis.ConnectionError:
                    pass
                assert time.monotonic() < deadline, "the sentinel never came up"
                time.sleep(0.05)
            probe.close()
            yield f"redis+sentinel://127.0.0.1:{port}/broker-master/3", master
        finally:
            proc.kill()
            proc.wait(10)


def test_sync_client_reaches_the_master_through_the_sentinel(sentinel_url):
    url, master = sentinel_url
    client = sync_redis(url)
    client.set("broker:probe", "via-sentinel")
    direct = redis.Redis(port=master.port, db=3)
    assert direct.get("broker:probe") == b"via-sentinel"


async def test_async_client_reaches_the_master_through_the_sentinel(sentinel_url):
    url, master = sentinel_url
    client = async_redis(url)
    await client.set("broker:probe", "async")
    assert redis.Redis(port=master.port, db=3).get("broker:probe") == b"async"
    await client.aclose()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis+sentinel://s1:26380,s2/mymaster/2", ([("s1", 26380), ("s2", 26379)], "mymaster", 2, None)),
        ("redis+sentinel://:p%40ss@s1/mymaster", ([("s1", 26379)], "mymaster", 0, "p@ss")),
    ],
)
def test_sentinel_url_parts(url, expected):
    parsed = SentinelURL.parse(url)
    assert (parsed.hosts, parsed.master, parsed.db, parsed.password) == expected


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379", "redis+sentinel:///mymaster"])
def test_sentinel_url_without_hosts_or_master_is_refused(url):
    with pytest.raises(ValueError, match="master name"):
        SentinelURL.parse(url)

"""Redis connections and rq queues, built from settings in one place.

`BROKER_REDIS_URL` takes the usual redis:// rediss:// unix:// forms, and a Sentinel form for HA Redis:
`redis+sentinel://[:password@]host1:26379,host2:26379/<master-name>[/<db>]`; the clients then ask the
sentinels for the current master and follow a failover."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel
from rq import Queue, Retry

from broker.settings import Settings

SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    hosts: list[tuple[str, int]]
    master: str
    db: int
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        rest = url[len(SENTINEL_SCHEME) :]
        netloc, _, path = rest.partition("/")
        credentials, _, hostlist = netloc.rpartition("@")
        password = unquote(credentials.partition(":")[2]) or None if credentials else None
        hosts = []
        for item in hostlist.split(","):
            host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
            hosts.append((host, int(port or SENTINEL_PORT)))
        master, _, db = path.strip("/").partition("/")
        if not master or not all(host for host, _ in hosts):
            raise ValueError(
                "a Sentinel URL needs hosts and a master name: redis+sentinel://h1:26379,h2/mymaster/0"
            )
        return cls(hosts=hosts, master=master, db=int(db or 0), password=password)


def _connect(url: str, options: dict[str, Any], client_class: Any, sentinel_class: Any) -> Any:
    options.setdefault("health_check_interval", 30)
    if url.startswith(SENTINEL_SCHEME):
        parsed = SentinelURL.parse(url)
        sentinel = sentinel_class(parsed.hosts, socket_timeout=options.get("socket_timeout", 5))
        return sentinel.master_for(parsed.master, db=parsed.db, password=parsed.password, **options)
    return client_class.from_url(url, **options)


def sync_redis(url: str, **options: Any) -> redis.Redis:
    client: redis.Redis = _connect(url, options, redis.Redis, Sentinel)
    return client


def async_redis(url: str, **options: Any) -> aredis.Redis:
    client: aredis.Redis = _connect(url, options, aredis.Redis, AsyncSentinel)
    return client


def retry_policy(settings: Settings) -> Retry | None:
    retries = settings.max_attempts - 1
    return Retry(max=retries, interval=settings.retry_intervals[:retries] or 0) if retries > 0 else None


def event_queue(settings: Settings, connection: redis.Redis) -> Queue:
    return Queue(settings.queue_name, connection=connection)

"""Ops endpoints: `GET /metrics` (Prometheus text; open unless BROKER_METRICS_TOKEN is set),
`GET /api/v1/ops/health` (queues, workers, Redis, event counts: the page's health panel and `broker check`)
and `GET /api/v1/ops/me` (who a token is). Queue and worker state is read straight from rq's keys with
the async client at request time, so the web tier never blocks on a sync connection."""

from __future__ import annotations

import hmac
import time
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, get_args

import redis.asyncio as aredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from redis.exceptions import RedisError
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.utils import utcparse
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from broker import keys, metrics
from broker.api.auth import authenticate, bearer_token
from broker.api.errors import json_error
from broker.pins import alist
from broker.settings import Settings
from broker.store import ALL_INDEX, index_key, text
from handlers.models import EventStatus

routes = web.RouteTableDef()

STATUSES: tuple[str, ...] = get_args(EventStatus)
SCRATCH_KEY = "broker:ops:scratch:{id}"


def _age(stamp: Any, now: float) -> float | None:
    if not stamp:
        return None
    try:
        return max(0.0, now - utcparse(text(stamp)).timestamp())
    except ValueError:
        return None


async def read_queue(client: aredis.Redis, name: str, now: float) -> metrics.QueueStats:
    queue_key = Queue.redis_queue_namespace_prefix + name
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(queue_key)
        pipe.lindex(queue_key, 0)  # rq pops from the left: the head is the oldest waiting job
        pipe.zcard(ScheduledJobRegistry.key_template.format(name))
        pipe.zcard(StartedJobRegistry.key_template.format(name))
        pipe.zcard(FailedJobRegistry.key_template.format(name))
        depth, head, scheduled, started, failed = await pipe.execute()
    oldest = None
    if head:
        oldest = _age(await client.hget(Job.key_for(text(head)), "enqueued_at"), now)
    return metrics.QueueStats(
        name=name,
        depth=int(depth),
        oldest_age_s=oldest,
        scheduled=int(scheduled),
        started=int(started),
        failed=int(failed),
    )


async def read_workers(client: aredis.Redis, names: list[str], now: float) -> list[dict[str, Any]]:
    """Workers registered on our queues. A registration whose key has expired (no heartbeat for the
    worker TTL) belongs to a dead worker; rq prunes it later, we just do not list it."""
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.smembers(WORKERS_BY_QUEUE_KEY % name)
        registered = sorted({text(k) for members in await pipe.execute() for k in members})
    if not registered:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for key in registered:
            pipe.hgetall(key)
        records = await pipe.execute()
    workers = []
    for key, raw in zip(registered, records, strict=True):
        if not raw:
            continue
        data = metrics.decode_hash(raw)
        workers.append(
            {
                "name": key.removeprefix(Worker.redis_worker_namespace_prefix),
                "hostname": data.get("hostname"),
                "pid": int(data["pid"]) if data.get("pid", "").isdigit() else None,
                "state": data.get("state", "?"),
                "queues": [q for q in data.get("queues", "").split(",") if q],
                "birth": data.get("birth"),
                "last_heartbeat": data.get("last_heartbeat"),
                "heartbeat_age_s": _age(data.get("last_heartbeat"), now),
                "successful_jobs": int(float(data.get("successful_job_count") or 0)),
                "failed_jobs": int(float(data.get("failed_job_count") or 0)),
                "working_time_s": float(data.get("total_working_time") or 0),
            }
        )
    return workers


async def read_status_counts(client: aredis.Redis, team: str | None) -> tuple[dict[str, int], int]:
    """Events by status from the status indexes; a team's are intersected with its team index. That
    uses ZINTERSTORE into a scratch key, not ZINTERCARD, which the embedded Redis (6.2) lacks."""
    if team is None:
        async with client.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(index_key("status", status))
            pipe.zcard(ALL_INDEX)
            *counts, total = await pipe.execute()
    else:
        team_index = index_key("team", team)
        scratch = SCRATCH_KEY.format(id=uuid.uuid4().hex)
        async with client.pipeline(transaction=True) as pipe:
            for status in STATUSES:
                pipe.zinterstore(scratch, [team_index, index_key("status", status)])
            pipe.delete(scratch)
            pipe.zcard(team_index)
            *counts, _deleted, total = await pipe.execute()
    return dict(zip(STATUSES, (int(c) for c in counts), strict=True)), int(total)


async def read_snapshot(client: aredis.Redis, settings: Settings, team: str | None = None) -> dict[str, Any]:
    now = time.time()
    names = settings.queue_names()
    queues = [await read_queue(client, name, now) for name in names]
    workers = await read_workers(client, names, now)
    by_status, total = await read_status_counts(client, team)
    return {"queues": queues, "workers": workers, "events_by_status": by_status, "events_total": total}


async def read_cluster(client: aredis.Redis, settings: Settings) -> metrics.ClusterSnapshot:
    try:
        snap = await read_snapshot(client, settings)
        async with client.pipeline(transaction=False) as pipe:
            for metric in metrics.CLUSTER_METRICS:
                pipe.hgetall(metric.key)
            raws = await pipe.execute()
        pins = Counter(pin.team or "" for pin in await alist(client))
    except (RedisError, OSError):
        metrics.REDIS_ERRORS.labels("metrics").inc()
        return metrics.ClusterSnapshot(ok=False)
    states: dict[str, int] = {}
    for worker in snap["workers"]:
        states[worker["state"]] = states.get(worker["state"], 0) + 1
    return metrics.ClusterSnapshot(
        ok=True,
        hashes={
            m.key: metrics.decode_hash(raw) for m, raw in zip(metrics.CLUSTER_METRICS, raws, strict=True)
        },
        queues=snap["queues"],
        workers=states,
        events_by_status=snap["events_by_status"],
        events_total=snap["events_total"],
        pins_by_team=dict(pins),
    )


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    if settings.metrics_token is not None:
        token = bearer_token(request) or ""
        if not hmac.compare_digest(token.encode(), settings.metrics_token.get_secret_value().encode()):
            raise json_error(web.HTTPUnauthorized, "/metrics needs the metrics bearer token")
    snapshot = await read_cluster(request.app[keys.REDIS], settings)
    # Cluster series go on a registry built for this scrape: the global one holds only this process's.
    cluster = CollectorRegistry(auto_describe=False)
    cluster.register(metrics.ClusterCollector(snapshot))
    body = generate_latest(REGISTRY) + generate_latest(cluster)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/v1/ops/me")
async def whoami(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return web.json_response({"admin": principal.is_admin, "team": principal.team})


@routes.get("/api/v1/ops/health")
async def ops_health(request: web.Request) -> web.Response:
    """Queues and workers are shared infrastructure and shown to every principal; event counts are
    scoped to the caller's team."""
    principal = await authenticate(request)
    settings = request.app[keys.SETTINGS]
    client = request.app[keys.REDIS]
    started = time.perf_counter()
    try:
        await client.ping()
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        snap = await read_snapshot(client, settings, principal.team)
    except (RedisError, OSError) as exc:
        metrics.REDIS_ERRORS.labels("ops").inc()
        return web.json_response(
            {"redis": {"ok": False, "error": type(exc).__name__}, "checked_at": _now()}, status=503
        )
    return web.json_response(
        {
            "redis": {"ok": True, "latency_ms": latency_ms},
            "queues": [asdict(q) for q in snap["queues"]],
            "workers": snap["workers"],
            "events": {"by_status": snap["events_by_status"], "total": snap["events_total"]},
            "scope": {"admin": principal.is_admin, "team": principal.team},
            "checked_at": _now(),
        }
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()

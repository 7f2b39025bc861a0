"""Liveness and readiness of a worker process, for Kubernetes probes: a tiny HTTP server on a thread.
/healthz fails when rq's heartbeat is older than the longest a job may run (the main loop is stuck) or a
sibling worker process has exited; /readyz fails when Redis does not answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis
from rq.worker import BaseWorker as Worker

from broker.job_template import EVENT_JOB_TIMEOUT_S

GRACE_S = 120


def heartbeat_age(worker: Worker, now: datetime | None = None) -> float | None:
    beat = worker.last_heartbeat
    if beat is None:
        return None
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - beat).total_seconds()


def liveness(worker: Worker, siblings_alive: Callable[[], bool]) -> tuple[int, dict[str, object]]:
    age = heartbeat_age(worker)
    limit = max(worker.worker_ttl, EVENT_JOB_TIMEOUT_S) + GRACE_S
    if not siblings_alive():
        return 503, {"status": "unhealthy", "reason": "a sibling worker process exited"}
    if age is not None and age > limit:
        return 503, {"status": "unhealthy", "reason": f"no rq heartbeat for {age:.0f}s (limit {limit}s)"}
    return 200, {"status": "ok", "heartbeat_age_s": None if age is None else round(age, 1)}


def readiness(connection: redis.Redis) -> tuple[int, dict[str, object]]:
    try:
        connection.ping()
    except (redis.RedisError, OSError) as exc:
        return 503, {"status": "unavailable", "redis": f"unreachable: {type(exc).__name__}"}
    return 200, {"status": "ready", "redis": "ok"}


def serve(
    port: int, worker: Worker, connection: redis.Redis, siblings_alive: Callable[[], bool]
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                status, body = liveness(worker, siblings_alive)
            elif self.path == "/readyz":
                status, body = readiness(connection)
            else:
                status, body = 404, {"error": "not found"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the log

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    threading.Thread(target=server.serve_forever, name="worker-health", daemon=True).start()
    return server

"""`broker worker` answers Kubernetes probes: a real worker process, probed over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import psutil
from rq import SimpleWorker

from broker.worker_health import liveness
from tests.redis_server import free_port


def probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(port: int, path: str, status: int, timeout_s: float = 20) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got, body = probe(port, path)
            if got == status:
                return body
        except (urllib.error.URLError, ConnectionError):
            pass
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.1)


def notify_workers(pid: int) -> list[psutil.Process]:
    # rq's scheduler is a child too; the sibling worker is the one started with `--queues notify`.
    return [p for p in psutil.Process(pid).children() if "notify" in p.cmdline()]


def test_worker_probes_and_a_dead_sibling(redis_url, sync_redis):
    port = free_port()
    env = {**os.environ, "BROKER_REDIS_URL": redis_url, "BROKER_WORKER_HEALTH_PORT": str(port)}
    worker = subprocess.Popen([sys.executable, "-m", "broker.cli", "worker"], env=env)
    try:
        assert wait_for(port, "/healthz", 200)["status"] == "ok"
        assert wait_for(port, "/readyz", 200)["redis"] == "ok"
        # The notification worker runs as a child process; when it dies, the pod must be restarted.
        deadline = time.monotonic() + 20
        while not (notify := notify_workers(worker.pid)):
            assert time.monotonic() < deadline, "the notification worker never started"
            time.sleep(0.1)
        notify[0].send_signal(signal.SIGKILL)
        body = wait_for(port, "/healthz", 503)
        assert "sibling" in body["reason"]
    finally:
        worker.terminate()
        worker.wait(15)


def test_liveness_fails_when_the_heartbeat_is_stale(sync_redis):
    worker = SimpleWorker(["broker"], connection=sync_redis)
    worker.last_heartbeat = datetime.now(UTC) - timedelta(hours=1)
    status, body = liveness(worker, lambda: True)
    assert status == 503 and "heartbeat" in body["reason"]
    worker.last_heartbeat = datetime.now(UTC)
    assert liveness(worker, lambda: True)[0] == 200

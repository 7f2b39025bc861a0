"""Memory: the web tier under a 10,000-webhook burst, and the process that holds the catalog with 10,000
Applications. Target: <= 150 MB for each.

    python bench/bench_memory.py [--burst 10000]

Web: the real `broker web` (one process, default settings but the in-flight bound) over a throwaway
redis-server; RSS before, peak (VmHWM) and after two bursts of mixed Gitea/Drone/Harbor deliveries: one
at 100 concurrent connections (under the in-flight bound: all accepted), one at 1,000 connections against
BROKER_MAX_INFLIGHT=128 (the excess shed with 503 + Retry-After, every request answered). The web tier
holds no catalog, so its memory does not depend on the number of Applications.
Catalog: a fresh process that imports what a worker imports (broker.worker, broker.gitops) and builds
the catalog from 10,000 Applications (half Otomi annotations, half APL with ImageUpdater CRs, as
bench/bench_catalog.py builds them); its RSS before and after. Loopback only; about half a minute."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from bench_intake import wait_ready  # noqa: E402

from tests.burst import delivery, post_all  # noqa: E402
from tests.conftest import DRONE_SECRET, GITEA_SECRET, HARBOR_AUTH  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402

MB = 1024 * 1024
TARGET_MB = 150

CATALOG_PROBE = """
import gc, sys
sys.path.insert(0, {bench!r})
sys.path.insert(0, {root!r})
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
import broker.worker, broker.gitops  # what a worker process has loaded
from handlers.catalog import Catalog
import bench_catalog
gc.collect()
before = rss()
apps, updaters = bench_catalog.objects({count})
catalog = Catalog({{}})
catalog.replace_all(apps, updaters)
del apps, updaters  # the watch hands objects over; the catalog keeps what it needs
gc.collect()
print(before, rss(), len(catalog))
"""


def status_field(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


async def burst(base: str, pid: int, count: int, start: int, concurrency: int) -> None:
    deliveries = [delivery(start + i) for i in range(count)]
    before = status_field(pid, "VmRSS")
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as session:
        started = time.perf_counter()
        answers = await post_all(session.post, deliveries, concurrency=concurrency)
        seconds = time.perf_counter() - started
    after = status_field(pid, "VmRSS")
    peak = status_field(pid, "VmHWM")
    statuses = Counter(answer.status for answer in answers)
    retry = {answer.headers.get("Retry-After") for answer in answers if answer.status == 503}
    print(
        f"  burst of {count} at {concurrency} connections: {len(answers)} answered in {seconds:.1f} s, "
        f"statuses {dict(statuses)}" + (f" (503 Retry-After: {sorted(retry)})" if retry else "")
    )
    print(
        f"    web RSS before {before / MB:6.1f} MB   after {after / MB:6.1f} MB   "
        f"peak so far {peak / MB:6.1f} MB"
    )


async def web_memory(count: int) -> int:
    with (
        tempfile.TemporaryDirectory() as tmp_name,
        RedisServer(Path(tmp_name) / "redis", appendfsync="everysec") as rs,
    ):
        port = free_port()
        env = {
            **os.environ,
            "BROKER_REDIS_URL": rs.url,
            "BROKER_DATA_DIR": str(Path(tmp_name) / "data"),
            "BROKER_GITEA_SECRET": GITEA_SECRET,
            "BROKER_DRONE_SECRET": DRONE_SECRET,
            "BROKER_HARBOR_AUTH": HARBOR_AUTH,
            "BROKER_MAX_INFLIGHT": "128",
            "BROKER_LOG_LEVEL": "WARNING",
        }
        log = Path(tmp_name) / "web.log"
        with log.open("wb") as out:
            web = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", "web", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_ready(base + "/healthz")
            print(f"web tier (pid {web.pid}): idle RSS {status_field(web.pid, 'VmRSS') / MB:.1f} MB")
            await burst(base, web.pid, count, 0, concurrency=100)
            await burst(base, web.pid, count, count, concurrency=1000)
            peak = status_field(web.pid, "VmHWM")
        finally:
            web.terminate()
            web.wait(10)
        client = rs.client()
        print(f"  events stored in Redis: {client.zcard('broker:events')}")
        client.close()
    return peak


def catalog_memory(count: int) -> int:
    code = CATALOG_PROBE.format(bench=str(ROOT / "bench"), root=str(ROOT), count=count)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    before, after, apps = (int(x) for x in out.stdout.split())
    print(
        f"catalog process: RSS {before / MB:.1f} MB with the worker's modules loaded, "
        f"{after / MB:.1f} MB holding {apps} Applications (+{(after - before) / MB:.1f} MB)"
    )
    return after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--apps", type=int, default=10_000)
    args = parser.parse_args()
    web_peak = asyncio.run(web_memory(args.burst))
    catalog_rss = catalog_memory(args.apps)
    for label, value in (
        ("web peak RSS", web_peak),
        (f"catalog process RSS ({args.apps} apps)", catalog_rss),
    ):
        verdict = "meets" if value / MB <= TARGET_MB else "ABOVE"
        print(f"{label}: {value / MB:.1f} MB ({verdict} target {TARGET_MB} MB)")


if __name__ == "__main__":
    main()

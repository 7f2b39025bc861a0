"""Intake CPU and rate of two checkouts of the broker, side by side: the A/B behind the figures in
bench/README.md, for judging a change on a box whose speed drifts from one minute to the next.

    python bench/compare_intake.py BEFORE_DIR AFTER_DIR [--rounds 8] [--requests 2000] [--no-pin]

Both checkouts' `broker web` run at once on one throwaway redis-server (AOF on), each with its own data
directory; rounds alternate which goes first, and each round drives one of them with the same generator as
bench_intake.py (32 connections, distinct signed Gitea pushes). Printed per round: rate and CPU per webhook
of the server, Redis and the generator; at the end, the medians of AFTER/BEFORE. The servers share a CPU
(the generator and Redis the other) unless `--no-pin`. Each checkout must have its dependencies installed
in this interpreter (the editable install of either will do for both when they differ only in code)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_intake import Result, Serial, drive, pin, show, spawn_web, wait_ready  # noqa: E402

from tests.redis_server import RedisServer, free_port  # noqa: E402


async def main(args: argparse.Namespace) -> None:
    checkouts = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with RedisServer(tmp / "redis", appendfsync="everysec") as redis_server:
            assert redis_server.process
            servers = {}
            for name, checkout in checkouts.items():
                port = free_port()
                log = tmp / f"web-{name}.log"
                # `-m` imports from the working directory: each server runs its own checkout's code.
                proc = spawn_web(redis_server.url, tmp / f"data-{name}", port, log, cwd=checkout)
                servers[name] = (proc, f"http://127.0.0.1:{port}/hooks/gitea")
            if args.pin:
                pin([proc.pid for proc, _ in servers.values()], [0, redis_server.process.pid])
            try:
                await compare(args, servers, redis_server.process.pid)
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(10)


async def compare(args: argparse.Namespace, servers: dict, redis_pid: int) -> None:
    serial = Serial()
    for proc, url in servers.values():
        await wait_ready(url.replace("/hooks/gitea", "/healthz"))
        await drive([url], serial.take(300), args.concurrency, {"server": [proc.pid]})
    results: dict[str, list[Result]] = {name: [] for name in servers}
    for number in range(args.rounds):
        order = list(servers) if number % 2 == 0 else list(servers)[::-1]
        for name in order:
            proc, url = servers[name]
            pids = {"server": [proc.pid], "redis": [redis_pid]}
            results[name].append(await drive([url], serial.take(args.requests), args.concurrency, pids))
        print(f"round {number + 1}")
        for name in servers:
            show(name, results[name][-1])
    before, after = results["before"], results["after"]
    rate = statistics.median(b.rate / a.rate for a, b in zip(before, after, strict=True))
    cpu = statistics.median(b.cpu["server"] / a.cpu["server"] for a, b in zip(before, after, strict=True))
    print(f"after/before, median of {args.rounds} rounds: rate {rate:.3f}, server CPU per webhook {cpu:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True)
    asyncio.run(main(parser.parse_args()))

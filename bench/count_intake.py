"""Intake cost in CPU instructions per webhook (valgrind's callgrind), for the bare endpoint and for the
broker of one or more checkouts: the same figure for the same code whatever else the box is doing, where
rates and CPU seconds on a shared VM drift by a quarter within the hour. The tool for judging a change to
the intake path; bench_intake.py stays the measure of throughput.

    python bench/count_intake.py [CHECKOUT ...] [--requests 500] [--concurrency 8]

Each server runs under callgrind with counting off while it starts and takes a warm-up of 300 webhooks,
then on for `--requests` distinct signed Gitea pushes (bench_intake.py's generator, `--concurrency`
connections), then dumps. The broker runs over a throwaway redis-server (AOF on, everysec); the generator
and Redis are not counted. Printed per server: instructions per webhook, the part spent in libcrypto, and
the ratio to the bare endpoint; with two checkouts, the second against the first.

libcrypto is shown apart because valgrind hides the CPU's SHA extensions from the program: under it, the
two SHA-256 passes over each body (its HMAC, and its digest for the dedup key) run in plain code at ~300k
instructions, while on the real CPU they take a few microseconds. Compare the figures without it.
Needs `valgrind` (Debian package); a run takes about 20 s per server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_intake import Serial, drive, hook_urls, spawn_bare, spawn_web, wait_ready  # noqa: E402

from tests.redis_server import RedisServer, free_port  # noqa: E402

WARMUP = 300
# A callgrind_annotate line: "  150,173,000 (21.12%)  file:function [object]".
ANNOTATED = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+.*\[(.*)\]\s*$")


@dataclass(frozen=True)
class Count:
    total: float
    crypto: float

    @property
    def without_crypto(self) -> float:
        return self.total - self.crypto


def read_counts(dump: Path, requests: int) -> Count:
    """Instructions per request in a callgrind dump: all, and those in libcrypto itself."""
    text = dump.read_text(errors="replace")
    total = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    assert total, f"no totals in {dump}"
    annotated = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    crypto = sum(
        int(match.group(1).replace(",", ""))
        for match in map(ANNOTATED.match, annotated.splitlines())
        if match and "libcrypto" in match.group(2)
    )
    return Count(int(total.group(1)) / requests, crypto / requests)


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


async def count(name: str, checkout: Path | None, requests: int, concurrency: int, tmp: Path) -> Count:
    """Instructions per webhook of the bare endpoint (`checkout` None) or of a checkout's broker."""
    port = free_port()
    dump = tmp / f"callgrind-{name}.out"
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dump}"]
    with contextlib.ExitStack() as stack:
        if checkout is None:
            server = spawn_bare(port, tmp / f"{name}.log", wrapper)
        else:
            redis_server = stack.enter_context(RedisServer(tmp / f"redis-{name}", appendfsync="everysec"))
            # `-m` imports from the working directory: the server runs its checkout's code.
            data = tmp / f"data-{name}"
            server = spawn_web(redis_server.url, data, port, tmp / f"{name}.log", checkout, wrapper)
        try:
            await wait_ready(f"http://127.0.0.1:{port}/healthz", timeout_s=300)
            serial = Serial()
            await drive(hook_urls([port]), serial.take(WARMUP), concurrency, {})
            callgrind(server.pid, "--instr=on")
            callgrind(server.pid, "--zero")
            result = await drive(hook_urls([port]), serial.take(requests), concurrency, {})
            callgrind(server.pid, "--dump")
            assert result.statuses == {202: requests}, f"{name}: {result.statuses}"
        finally:
            server.terminate()
            server.wait(60)
    # The dump the --dump above wrote: the one after the startup part (numbered .1).
    return read_counts(max(tmp.glob(f"{dump.name}.*"), key=lambda path: path.stat().st_mtime), requests)


def show(name: str, figures: Count, bare: Count) -> None:
    ratio = bare.without_crypto / figures.without_crypto
    print(
        f"  {name:>10}: {figures.total:>11,.0f} instructions/webhook  libcrypto {figures.crypto:>9,.0f}  "
        f"without it {figures.without_crypto:>11,.0f}  bare/this {ratio:.3f}"
    )


async def main(args: argparse.Namespace) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("count_intake.py needs valgrind (apt-get install valgrind)")
    checkouts = [Path(path).resolve() for path in args.checkouts] or [ROOT]
    print(f"requests={args.requests} concurrency={args.concurrency} (callgrind; libcrypto see the docstring)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bare = await count("bare", None, args.requests, args.concurrency, tmp)
        show("bare", bare, bare)
        counts = []
        for index, checkout in enumerate(checkouts):
            figures = await count(f"broker-{index}", checkout, args.requests, args.concurrency, tmp)
            show(checkout.name or str(checkout), figures, bare)
            counts.append(figures)
    if len(counts) == 2:
        first, second = counts
        change = second.without_crypto / first.without_crypto - 1
        print(f"second/first, without libcrypto: {change:+.1%} instructions per webhook")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("checkouts", nargs="*", help="broker checkouts to count (default: this one)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    asyncio.run(main(parser.parse_args()))

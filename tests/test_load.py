"""The load case of issue 7, end to end: a burst of 10,000 webhooks mixed across the three senders, sent
harder than the web tier takes them and retried the way a storm of senders retries (a shed delivery sent
again at once, without waiting its Retry-After; an accepted one sent again as if its answer had been
lost), comes out exactly once: one event per delivery, each processed once by one of two real
`broker worker` processes, nothing failed and nothing left queued."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import redis
from aiohttp.test_utils import TestClient
from rq import Queue
from rq.registry import FailedJobRegistry

from broker.app import create_app
from broker.settings import Settings
from broker.store import ALL_INDEX, event_key
from handlers.models import Event
from tests.burst import Answer, Delivery, delivery

BURST = 10_000
SENDERS = 128
MAX_INFLIGHT = 32  # well under SENDERS, so that the burst is shed in part
SENT_TWICE_EVERY = 10  # every tenth delivery is sent again once it was accepted
WORKERS = 2


class Storm:
    """Senders that answer a 503 by sending again at once and send some accepted deliveries twice."""

    def __init__(self, client: TestClient, deliveries: list[Delivery]) -> None:
        self.client = client
        self.deliveries = deliveries
        self.accepted: dict[int, Answer] = {}
        self.duplicates: dict[int, Answer] = {}
        self.statuses: Counter[int] = Counter()
        self.shed_without_retry_after = 0

    async def send(self, index: int) -> Answer:
        item = self.deliveries[index]
        while True:
            async with self.client.post(
                f"/hooks/{item.source}", data=item.body, headers=item.headers
            ) as resp:
                answer = Answer(resp.status, await resp.json(), dict(resp.headers))
            self.statuses[answer.status] += 1
            if answer.status != 503:
                return answer
            if not answer.headers.get("Retry-After"):
                self.shed_without_retry_after += 1
            await asyncio.sleep(0)  # a storm does not wait as long as it is told to

    async def run(self) -> None:
        pending = iter(range(len(self.deliveries)))

        async def sender() -> None:
            for index in pending:
                self.accepted[index] = await self.send(index)
                if index % SENT_TWICE_EVERY == 0:
                    self.duplicates[index] = await self.send(index)

        await asyncio.gather(*(sender() for _ in range(SENDERS)))


def run_workers(settings: Settings, tmp_path: Path) -> list[str]:
    """Two `broker worker --burst` processes on the events queue, run to the end; their logs."""
    env = {
        **os.environ,
        "BROKER_REDIS_URL": str(settings.redis_url),
        "BROKER_DATA_DIR": str(tmp_path / "worker"),
        "BROKER_WORKER_HEALTH_PORT": "0",
        "BROKER_LOG_LEVEL": "WARNING",
    }
    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    workers = []
    for log in logs:
        with log.open("wb") as out:
            command = [sys.executable, "-m", "broker.cli", "worker", "--burst", "--queues", "events"]
            workers.append(subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    for worker in workers:
        assert worker.wait(timeout=240) == 0, "a worker failed"
    return [log.read_text(errors="replace") for log in logs]


async def test_a_storm_of_10000_mixed_webhooks_comes_out_once_each(
    aiohttp_client, settings, sync_redis, tmp_path
):
    shedding = settings.model_copy(update={"max_inflight": MAX_INFLIGHT})
    client = await aiohttp_client(create_app(shedding))
    storm = Storm(client, [delivery(i) for i in range(BURST)])
    await storm.run()

    assert set(storm.statuses) <= {202, 200, 503}, storm.statuses
    assert storm.statuses[503] > 0, "the burst never reached the in-flight bound: nothing was shed"
    assert storm.shed_without_retry_after == 0, "every 503 says when to come back"
    assert {answer.status for answer in storm.accepted.values()} == {202}
    ids = [event_id for answer in storm.accepted.values() for event_id in answer.event_ids]
    assert len(ids) == len(set(ids)) == BURST, "one event per delivery, none twice"
    for index, again in storm.duplicates.items():
        assert again.status == 200, again
        assert again.body == {"event_id": storm.accepted[index].event_ids[0], "status": "duplicate"}
    assert sync_redis.zcard(ALL_INDEX) == BURST, "the copies stored nothing"
    sources = Counter(storm.deliveries[index].source for index in storm.accepted)
    assert sources == {"gitea": 3334, "drone": 3333, "harbor": 3333}

    logs = run_workers(settings, tmp_path)

    queue = Queue(settings.queue_name, connection=sync_redis)
    assert queue.count == 0, "jobs left behind"
    assert FailedJobRegistry(queue=queue).count == 0, "\n".join(logs)[-4000:]
    records = [Event.model_validate_json(raw) for raw in _records(sync_redis, ids)]
    assert Counter(record.status for record in records) == {"done": BURST}
    assert Counter(record.attempts for record in records) == {1: BURST}, "each event processed once"


def _records(client: redis.Redis, ids: list[str]) -> list[bytes]:
    found = []
    for start in range(0, len(ids), 1000):
        chunk = client.mget([event_key(event_id) for event_id in ids[start : start + 1000]])
        assert all(chunk), "an accepted event's record is missing"
        found += chunk
    return found

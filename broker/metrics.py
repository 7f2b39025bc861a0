"""Prometheus metrics, defined once. Labels are closed sets (source, outcome, reason, result), never ids.

Two kinds live here:
- process-local series (the web tier's intake counters): ordinary prometheus_client objects;
- cluster-wide series recorded by workers, which run in other processes and pods: each is a Redis hash
  (`broker:metrics:<name>`, field = the label values) bumped with HINCRBY, and the web tier turns a
  snapshot of those hashes into metric families at scrape time (`ClusterCollector`). Queue depths, job
  ages, worker counts and event counts are read from Redis at scrape time too. Redis-derived series are
  identical on every web replica; aggregate them with max(), not sum().

Workers call the `record_*` / `set_*` helpers below; they never raise (metrics must not fail a job)."""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.store import text
from handlers.models import Event

log = logging.getLogger(__name__)

# --- process-local (web tier) ----------------------------------------------------------------------

WEBHOOKS = Counter(
    "broker_webhooks_received_total",
    "Webhook deliveries answered, by sender, event type and outcome (queued, ignored, duplicate)",
    ["source", "type", "outcome"],
)
REJECTIONS = Counter(
    "broker_webhook_rejections_total",
    "Webhook deliveries refused, by sender and reason (401, 400, 413, 415, 503, disabled)",
    ["source", "reason"],
)
REDIS_ERRORS = Counter("broker_redis_errors_total", "Redis operations that failed, by caller", ["where"])
INTAKE_SECONDS = Histogram(
    "broker_intake_seconds",
    "Time from request start to the webhook answer",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


class BoundedLabel:
    """A label whose values the sender chooses (the event type: a Gitea header, a Harbor body field):
    the first `limit` distinct values are reported as they are, later ones as "other". Every value is a
    series kept for the life of the process, so an authentic but odd sender must not grow them without
    end; Gitea and Harbor have a few dozen event types between them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value not in self._seen:
            if len(self._seen) >= self.limit:
                return "other"
            self._seen.add(value)
        return value


WEBHOOK_TYPE = BoundedLabel(64)


@lru_cache(maxsize=256)
def answered(source: str, type_: str, outcome: str) -> tuple[Counter, Histogram]:
    """The WEBHOOKS and INTAKE_SECONDS children for one kind of answered webhook, looked up once rather
    than on every webhook (prometheus-client validates and locks on each `labels`)."""
    return WEBHOOKS.labels(source, WEBHOOK_TYPE(type_), outcome), INTAKE_SECONDS.labels(source)


SPOOL = Counter(
    "broker_spool_deliveries_total",
    "Deliveries through the local spool (spooled, replayed, already_stored, duplicate, rejected)",
    ["outcome"],
)
SPOOL_PENDING_BYTES = Gauge(
    "broker_spool_pending_bytes", "Bytes in this web process's spool, not yet deleted"
)

# --- cluster-wide, recorded in Redis by workers ------------------------------------------------------

KEY_PREFIX = "broker:metrics:"
CLUSTER_NOTE = " (cluster-wide, read from Redis: identical on every web replica)"
_SEP = "|"
_LABEL_VALUE = re.compile(r"[^a-zA-Z0-9_.:/-]")


def label_value(value: object) -> str:
    """Label values must stay a small closed set: callers pass vocabulary words; this only guards the
    field encoding and bounds the length."""
    return _LABEL_VALUE.sub("_", str(value if value is not None else "none"))[:48] or "none"


@dataclass(frozen=True)
class ClusterMetric:
    name: str  # the exposed name (counters without their `_total`)
    help: str
    labels: tuple[str, ...]
    kind: str  # counter | gauge | histogram
    buckets: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def field(self, values: Iterable[object]) -> str:
        encoded = [label_value(v) for v in values]
        assert len(encoded) == len(self.labels), f"{self.name} takes labels {self.labels}"
        return _SEP.join(encoded)


PROCESSED = ClusterMetric(
    "broker_events_processed",
    "Event processing attempts by sender and outcome (done, ignored, dead, retry)",
    ("source", "outcome"),
    "counter",
)
PROCESSING_SECONDS = ClusterMetric(
    "broker_processing_seconds",
    "Time from receipt of a webhook to its event's final status (done, ignored, dead); replays excluded",
    ("source", "outcome"),
    "histogram",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0),
)
WRITEBACKS = ClusterMetric(
    "broker_writebacks",
    "Image write-backs by method (argocd, git) and result",
    ("method", "result"),
    "counter",
)
SYNCS = ClusterMetric(
    "broker_syncs",
    "Argo CD requests by mode (sync, refresh), channel (k8s, rest) and result (requested, in_flight, error)",
    ("mode", "via", "result"),
    "counter",
)
DELIVERIES = ClusterMetric(
    "broker_notification_deliveries",
    "Notification delivery attempts by notice kind and result (succeeded, retrying, dead)",
    ("kind", "result"),
    "counter",
)
CATALOG_SIZE = ClusterMetric(
    "broker_catalog_size",
    "Objects in the workers' GitOps catalog, by kind (applications), as of the last processed event",
    ("kind",),
    "gauge",
)
CLUSTER_METRICS: tuple[ClusterMetric, ...] = (
    PROCESSED,
    PROCESSING_SECONDS,
    WRITEBACKS,
    SYNCS,
    DELIVERIES,
    CATALOG_SIZE,
)


def inc(pipe: Any, metric: ClusterMetric, *values: object, amount: int = 1) -> None:
    """Queue a counter bump on a (sync or async) pipeline or client."""
    pipe.hincrby(metric.key, metric.field(values), amount)


def observe(pipe: Any, metric: ClusterMetric, value: float, *values: object) -> None:
    """Queue a histogram observation: one bucket counter (non-cumulative; the collector sums) and the sum."""
    labels = metric.field(values)
    bucket = bisect.bisect_left(metric.buckets, value)  # == len(buckets) means +Inf
    pipe.hincrby(metric.key, f"{labels}{_SEP}b{bucket}", 1)
    pipe.hincrbyfloat(metric.key, f"{labels}{_SEP}sum", value)


def _run(client: redis.Redis, queue_ops: Any) -> None:
    try:
        with client.pipeline(transaction=False) as pipe:
            queue_ops(pipe)
            pipe.execute()
    except redis.RedisError as exc:
        log.debug("metrics not recorded: %s", exc)


# --- the API workers and executors call -----------------------------------------------------------


def record_processed(client: redis.Redis, event: Event, outcome: str, *, now: datetime | None = None) -> None:
    """One processing attempt of `event` ended with `outcome` (done, ignored, dead, retry). Final
    outcomes also observe receipt-to-final latency, except for replays, whose receipt is long past
    (the store marks them with a `replayed (was ...)` reason)."""
    replayed = (event.reason or "").startswith("replayed")

    def ops(pipe: Any) -> None:
        inc(pipe, PROCESSED, event.source, outcome)
        if outcome != "retry" and not replayed:
            latency = ((now or datetime.now(UTC)) - event.received_at).total_seconds()
            observe(pipe, PROCESSING_SECONDS, max(latency, 0.0), event.source, outcome)

    _run(client, ops)


def record_writeback(client: redis.Redis, method: str, result: str) -> None:
    """method: argocd | git; result: e.g. written, unchanged, conflict, failed."""
    _run(client, lambda pipe: inc(pipe, WRITEBACKS, method, result))


def record_sync(client: redis.Redis, mode: str, result: str, *, via: str = "k8s") -> None:
    """mode: sync | refresh; via: k8s | rest; result: requested | in_flight | error."""
    _run(client, lambda pipe: inc(pipe, SYNCS, mode, via, result))


def set_catalog_size(client: redis.Redis, sizes: Mapping[str, int]) -> None:
    """Gauge values by kind, last writer wins (every worker watches the same catalog)."""
    if sizes:
        mapping = {CATALOG_SIZE.field([kind]): int(n) for kind, n in sizes.items()}
        _run(client, lambda pipe: pipe.hset(CATALOG_SIZE.key, mapping=mapping))


# --- the scrape side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueStats:
    name: str
    depth: int
    oldest_age_s: float | None
    scheduled: int
    started: int
    failed: int


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything the web tier read from Redis for one scrape. `ok` False: Redis did not answer."""

    ok: bool
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # metric key -> field -> value
    queues: list[QueueStats] = field(default_factory=list)
    workers: dict[str, int] = field(default_factory=dict)  # rq state -> count
    events_by_status: dict[str, int] = field(default_factory=dict)
    events_total: int = 0
    pins_by_team: dict[str, int] = field(default_factory=dict)


def decode_hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


class ClusterCollector(Collector):
    """Metric families for one snapshot; registered on a per-scrape registry, never the global one."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        up = GaugeMetricFamily("broker_redis_up", "1 if this scrape could read Redis" + CLUSTER_NOTE)
        up.add_metric([], 1.0 if snap.ok else 0.0)
        yield up
        if not snap.ok:
            return
        for metric in CLUSTER_METRICS:
            yield _family(metric, snap.hashes.get(metric.key, {}))
        yield from _queue_families(snap.queues)
        yield _gauge_by(
            "broker_workers", "rq workers registered on the broker's queues, by state", "state", snap.workers
        )
        yield _gauge_by(
            "broker_events",
            "Events in the log (within retention), by status",
            "status",
            snap.events_by_status,
        )
        total = GaugeMetricFamily(
            "broker_events_log_size", "Events in the log (within retention)" + CLUSTER_NOTE
        )
        total.add_metric([], snap.events_total)
        yield total
        yield _gauge_by(
            "broker_pins",
            "Images the broker leaves alone since it found them rolled back by hand, by team",
            "team",
            snap.pins_by_team,
        )


def _queue_families(queues: list[QueueStats]) -> Iterator[Metric]:
    depth = GaugeMetricFamily(
        "broker_queue_depth", "Jobs waiting in an rq queue" + CLUSTER_NOTE, labels=["queue"]
    )
    age = GaugeMetricFamily(
        "broker_queue_oldest_job_age_seconds",
        "Age of the job at the head of an rq queue, 0 when empty" + CLUSTER_NOTE,
        labels=["queue"],
    )
    scheduled = GaugeMetricFamily(
        "broker_queue_scheduled_jobs", "Jobs waiting for a retry time" + CLUSTER_NOTE, labels=["queue"]
    )
    started = GaugeMetricFamily(
        "broker_queue_started_jobs", "Jobs being run now" + CLUSTER_NOTE, labels=["queue"]
    )
    failed = GaugeMetricFamily(
        "broker_queue_failed_jobs", "Jobs in rq's failed registry" + CLUSTER_NOTE, labels=["queue"]
    )
    for q in queues:
        depth.add_metric([q.name], q.depth)
        age.add_metric([q.name], q.oldest_age_s or 0.0)
        scheduled.add_metric([q.name], q.scheduled)
        started.add_metric([q.name], q.started)
        failed.add_metric([q.name], q.failed)
    yield from (depth, age, scheduled, started, failed)


_SIMPLE_FAMILIES: dict[str, type[CounterMetricFamily] | type[GaugeMetricFamily]] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
}


def _family(metric: ClusterMetric, fields: dict[str, str]) -> Metric:
    help_text = metric.help + CLUSTER_NOTE
    labels = list(metric.labels)
    simple = _SIMPLE_FAMILIES.get(metric.kind)
    if simple is not None:
        family = simple(metric.name, help_text, labels=labels)
        for key, value in sorted(fields.items()):
            family.add_metric(key.split(_SEP), float(value))
        return family
    histogram = HistogramMetricFamily(metric.name, help_text, labels=labels)
    for label_key, (counts, total) in sorted(_histogram_series(metric, fields).items()):
        cumulative, buckets = 0.0, []
        for bound, count in zip([*metric.buckets, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append((_bound(bound), cumulative))
        histogram.add_metric(label_key.split(_SEP), buckets, total)
    return histogram


def _histogram_series(metric: ClusterMetric, fields: dict[str, str]) -> dict[str, tuple[list[float], float]]:
    series: dict[str, tuple[list[float], float]] = {}
    for key, value in fields.items():
        label_key, _, part = key.rpartition(_SEP)
        counts, total = series.get(label_key, ([0.0] * (len(metric.buckets) + 1), 0.0))
        if part == "sum":
            total = float(value)
        elif part.startswith("b") and part[1:].isdigit() and int(part[1:]) < len(counts):
            counts[int(part[1:])] += float(value)
        series[label_key] = (counts, total)
    return series


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _gauge_by(name: str, help_text: str, label: str, counts: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text + CLUSTER_NOTE, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family

"""Prometheus metrics, defined once. Labels are closed sets (source, outcome, reason), never ids."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter(
    "broker_webhooks_received_total",
    "Webhook deliveries answered, by sender, event type and outcome",
    ["source", "type", "outcome"],
)
REJECTIONS = Counter(
    "broker_webhook_rejections_total",
    "Webhook deliveries refused, by sender and reason (401, 400, 413, 415, 503)",
    ["source", "reason"],
)
REDIS_ERRORS = Counter("broker_redis_errors_total", "Redis operations that failed", ["where"])
INTAKE_SECONDS = Histogram(
    "broker_intake_seconds",
    "Time from request start to the webhook answer",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)

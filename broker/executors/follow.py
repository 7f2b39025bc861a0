"""Follow a sync to its end: poll the Application until the operation we caused has completed
(`status.operationState.phase` Succeeded/Failed/Error) and health has settled (not Progressing), or a
timeout passes. Health knows the platform's workloads: a Knative Service that is not Ready yet, or a
Deployment still rolling out, keeps the rollout "in progress" and is named in the result."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.executors.sync_k8s import EVENT_INFO

COMPLETED = frozenset({"Succeeded", "Failed", "Error"})
UNSETTLED_HEALTH = frozenset({"Progressing", "Unknown", ""})


@dataclass(frozen=True)
class FollowResult:
    settled: bool
    phase: str | None
    health: str | None
    message: str | None
    revision: str | None
    waiting: tuple[str, ...] = ()
    elapsed_s: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.phase == "Succeeded" and self.health == "Healthy"

    def summary(self) -> str:
        if not self.settled:
            phase = self.phase or "none"
            text = f"not settled after {self.elapsed_s:.0f}s (phase {phase}, health {self.health})"
        else:
            text = f"sync {self.phase}, health {self.health}"
        if self.waiting:
            text += "; " + "; ".join(self.waiting)
        return text


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def tagged(operation: dict[str, Any] | None, event_id: str | None) -> bool:
    """Whether this Application operation carries our event id (the sync request's info entry)."""
    infos = (operation or {}).get("info") or []
    return any(i.get("name") == EVENT_INFO and i.get("value") == event_id for i in infos)


def our_operation(app: dict[str, Any], *, event_id: str | None, since: float) -> dict[str, Any] | None:
    """The operation state of the sync we asked for (tagged with our event id), or, when Argo CD syncs
    by itself (refresh, auto-sync), the first operation started after we acted."""
    state = (app.get("status") or {}).get("operationState") or {}
    if not state:
        return None
    if event_id:
        return state if tagged(state.get("operation"), event_id) else None
    started = _timestamp(state.get("startedAt"))
    if started is not None and started >= since - 1.0:  # Argo CD stamps whole seconds
        return state
    return None


def not_ready(app: dict[str, Any]) -> tuple[str, ...]:
    """Workloads Argo CD reports as not healthy yet, in words."""
    waiting = []
    for res in (app.get("status") or {}).get("resources") or []:
        health = res.get("health") or {}
        status = health.get("status")
        if status in (None, "Healthy"):
            continue
        kind, name = res.get("kind", "?"), res.get("name", "?")
        message = health.get("message") or status
        if res.get("group") == "serving.knative.dev" and kind == "Service":
            waiting.append(f"Knative Service {name} not Ready yet ({message})")
        else:
            waiting.append(f"{kind} {name} {status.lower()} ({message})")
    return tuple(waiting)


def evaluate(
    app: dict[str, Any], *, event_id: str | None, since: float, elapsed_s: float, timed_out: bool
) -> FollowResult | None:
    """One look at the Application: the result once the operation we caused has completed and health
    has settled, or (when `timed_out`) what it last showed; None while it is still under way."""
    status = app.get("status") or {}
    health = (status.get("health") or {}).get("status")
    state = our_operation(app, event_id=event_id, since=since)
    phase = state.get("phase") if state else None
    message = (state or {}).get("message") or (status.get("health") or {}).get("message")
    revision = ((state or {}).get("syncResult") or {}).get("revision")
    waiting = not_ready(app)
    if phase in ("Failed", "Error") or (phase == "Succeeded" and (health or "") not in UNSETTLED_HEALTH):
        return FollowResult(True, phase, health, message, revision, waiting, elapsed_s)
    if timed_out:
        return FollowResult(False, phase, health, message, revision, waiting, elapsed_s)
    return None


def follow(
    get_app: Callable[[], dict[str, Any]],
    *,
    event_id: str | None,
    since: float,
    timeout_s: float,
    poll_s: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FollowResult:
    """Poll until settled or `timeout_s`, in this thread (the worker follows with short jobs instead:
    broker/gitops/follow_job.py)."""
    start = clock()
    while True:
        app = get_app()
        elapsed = clock() - start
        result = evaluate(
            app, event_id=event_id, since=since, elapsed_s=elapsed, timed_out=elapsed >= timeout_s
        )
        if result is not None:
            return result
        sleep(poll_s)

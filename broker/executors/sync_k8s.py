"""Kubernetes-native sync and refresh of an Application (WIRE-FORMATS §4.2). A sync sets `.operation` only
when none is in flight, with a JSON Patch whose first op tests the resourceVersion read a moment before:
a concurrent writer makes it fail (409/422) instead of being clobbered, and it is retried with backoff.
An operation already running is waited for a while, then reported."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.errors import TransientError
from broker.kube import Conflict, Kube

INITIATOR = "webhook-broker"
EVENT_INFO = "broker-event"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"


@dataclass(frozen=True)
class SyncRequest:
    app: str
    mode: str  # "sync" | "refresh"
    revision: str | None
    reason: str
    event_id: str


@dataclass(frozen=True)
class SyncResult:
    requested: bool
    mode: str
    detail: str
    in_flight: bool = False
    conflicts: int = 0
    requested_at: float = 0.0


def operation_body(req: SyncRequest) -> dict[str, Any]:
    sync: dict[str, Any] = {"prune": False, "syncStrategy": {"hook": {}}}
    if req.revision:
        sync["revision"] = req.revision
    return {
        "initiatedBy": {"username": INITIATOR, "automated": False},
        "info": [{"name": EVENT_INFO, "value": req.event_id}, {"name": "reason", "value": req.reason[:200]}],
        "sync": sync,
    }


def running_operation(app: dict[str, Any]) -> str | None:
    """Describe the operation in flight, if any: `.operation` set, or operationState still Running."""
    if app.get("operation"):
        who = ((app["operation"].get("initiatedBy") or {}).get("username")) or "someone"
        return f"operation requested by {who} not yet started"
    state = (app.get("status") or {}).get("operationState") or {}
    if state.get("phase") in ("Running", "Terminating"):
        return f"operation {str(state['phase']).lower()} since {state.get('startedAt', '?')}"
    return None


def refresh_k8s(kube: Kube, req: SyncRequest) -> SyncResult:
    started = time.time()
    kube.merge_patch_app(req.app, {"metadata": {"annotations": {REFRESH_ANNOTATION: "normal"}}})
    return SyncResult(True, "refresh", f"refresh requested: {req.reason}", requested_at=started)


def sync_k8s(
    kube: Kube,
    req: SyncRequest,
    *,
    retries: int,
    wait_inflight_s: float,
    poll_s: float = 0.2,
    backoff_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncResult:
    deadline = time.monotonic() + wait_inflight_s
    conflicts = 0
    while True:
        app = kube.get_app(req.app)
        busy = running_operation(app)
        if busy:
            if time.monotonic() < deadline:
                sleep(poll_s)
                continue
            return SyncResult(
                False, "sync", f"operation in flight: {busy}", in_flight=True, conflicts=conflicts
            )
        version = (app.get("metadata") or {}).get("resourceVersion")
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
        ops.append({"op": "add", "path": "/operation", "value": operation_body(req)})
        started = time.time()
        try:
            kube.json_patch_app(req.app, ops if version else ops[1:])
            return SyncResult(
                True, "sync", f"sync requested: {req.reason}", conflicts=conflicts, requested_at=started
            )
        except Conflict:
            conflicts += 1
            if conflicts > retries:
                raise TransientError(
                    f"lost {conflicts} resourceVersion races setting the sync of {req.app}"
                ) from None
            sleep(backoff_s * (2 ** (conflicts - 1)))

"""`argocd` write-back: set the image on the live Application (Helm parameters or Kustomize images on the
right source), as Image Updater does, but with a JSON Patch guarded by a resourceVersion test instead of a
blind update. On a lost race the Application is read again and the decision re-made on fresh state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.errors import TransientError
from broker.kube import Conflict, Kube
from handlers.app_edits import ImageWrite, writeback_patch

Decide = Callable[[dict[str, Any]], list[ImageWrite]]


@dataclass
class ArgoWrite:
    changed: bool
    writes: list[ImageWrite] = field(default_factory=list)
    patch: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0


def write_back_argocd(
    kube: Kube,
    app: str,
    decide: Decide,
    *,
    retries: int,
    backoff_s: float = 0.05,
    sleep: Callable[[float], None] = time.sleep,
) -> ArgoWrite:
    """`decide(live_app)` returns the writes still needed against that state (no-downgrade included).
    Returns what was patched; `changed=False` when the Application already carries every value."""
    conflicts = 0
    for attempt in range(retries + 1):
        live = kube.get_app(app)
        writes = decide(live)
        if not writes:
            return ArgoWrite(False, conflicts=conflicts)
        ops = writeback_patch(live, writes)
        if not ops:
            return ArgoWrite(False, writes, conflicts=conflicts)
        try:
            kube.json_patch_app(app, ops)
            return ArgoWrite(True, writes, ops, conflicts)
        except Conflict:
            conflicts += 1
            sleep(backoff_s * (2**attempt))
    raise TransientError(f"Application {app} changed under every one of {retries + 1} write-back attempts")

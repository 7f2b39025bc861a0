"""Drone build (final status) -> what the deployment record learns: the build, its commit, and for tag
builds the tag its image is expected under. Drone itself deploys nothing here."""

from __future__ import annotations

from datetime import datetime

from handlers.gitops_actions import DronePlan, decision
from handlers.models import BuildInfo, Event

SUCCEEDED = frozenset({"success"})
FAILED = frozenset({"failure", "killed", "error", "declined"})


def plan_drone(event: Event, *, now: datetime) -> DronePlan:
    build = event.build or BuildInfo()
    raw = (event.payload or {}).get("build") or {}
    status = build.status or raw.get("status") or ""
    ref = event.ref or raw.get("ref") or ""
    tag = ref[len("refs/tags/") :] if ref.startswith("refs/tags/") else None
    commit = event.commit or raw.get("after") or None
    target = f"{event.repo or 'drone'}#{build.number if build.number is not None else '?'}"
    message = (raw.get("message") or "").strip() or None
    if status not in SUCCEEDED | FAILED:
        act = decision(
            "build", target, f"build status {status or 'unknown'} is not final: nothing to record", now=now
        )
        return DronePlan(build, event.repo, event.team, commit, tag, False, message, (act,), act.decision)
    succeeded = status in SUCCEEDED
    text = f"build {status}" + (f" for {commit[:12]}" if commit else "") + (f" (tag {tag})" if tag else "")
    act = decision("build", target, text, now=now, link=build.link, commit=commit, tag=tag)
    return DronePlan(build, event.repo, event.team, commit, tag, succeeded, message, (act,), text)

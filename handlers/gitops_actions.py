"""Planned GitOps work as values: what the pure planners decide and the executors in broker/ carry out.
Decisions that change nothing are `Action`s recorded on the event, with the reason in `decision`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from handlers.catalog_parse import TrackedImage
from handlers.image_strategies import Candidate
from handlers.models import Action, BuildInfo

TriggerMode = Literal["refresh", "sync"]

# Marker the broker puts in its own write-back commits, so the Gitea push they cause is recognised.
WRITEBACK_MARKER = "[broker write-back]"


def decision(
    kind: str, target: str, text: str, *, now: datetime, result: str | None = None, **detail: Any
) -> Action:
    return Action(kind=kind, target=target, decision=text, result=result, detail=detail or None, at=now)


@dataclass(frozen=True)
class ImageUpdate:
    """Move one tracked image of one Application to a pushed artifact (subject to no-downgrade against
    what the Application carries at execution time)."""

    app: str
    team: str | None
    image: TrackedImage
    candidate: Candidate


@dataclass(frozen=True)
class HarborPlan:
    updates: tuple[ImageUpdate, ...]
    actions: tuple[Action, ...]
    reason: str


@dataclass(frozen=True)
class AppTrigger:
    """Refresh or sync one Application, and why this mode."""

    app: str
    team: str | None
    mode: TriggerMode
    revision: str | None
    why: str


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    message: str
    url: str | None
    pusher: str | None
    repo: str | None  # "owner/name"
    ref: str
    team: str | None
    own_writeback: bool = False


@dataclass(frozen=True)
class GiteaPlan:
    commit: CommitInfo | None
    triggers: tuple[AppTrigger, ...]
    actions: tuple[Action, ...]
    reason: str
    ignored: bool = False


@dataclass(frozen=True)
class DronePlan:
    build: BuildInfo
    repo: str | None
    team: str | None
    commit: str | None
    tag: str | None  # a tag build's tag (`refs/tags/<tag>`)
    succeeded: bool
    message: str | None
    actions: tuple[Action, ...]
    reason: str

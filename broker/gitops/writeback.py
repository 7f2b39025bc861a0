"""Carry out the write-back for one Application: decide each image's move on fresh state (what the
Application carries and runs, what the target file says, what the broker applied last, whether the image
is pinned after a rollback), then write it the configured way: patch the Application (`argocd`) or
commit and push (`git`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.errors import PermanentError
from broker.executors.argocd_app import write_back_argocd
from broker.gitops.engine import Engine
from broker.kube import NotFound
from broker.pins import PinStore
from handlers.app_edits import (
    Deployed,
    ImageWrite,
    current_values,
    deployed_value,
    is_kustomize,
    select_source,
)
from handlers.catalog import TrackedImage, WriteBack
from handlers.git_urls import normalize_repo_url
from handlers.gitops_actions import WRITEBACK_MARKER
from handlers.image_strategies import Candidate, Current, Verdict, judge, split_tag_value, tag_value
from handlers.rollback import Pin, rolled_back, rolled_forward, value_text
from handlers.values_edits import current_in_file, edit_file, resolve_target

Chosen = dict[str, tuple[TrackedImage, Candidate]]  # alias -> (tracked image, best candidate)


@dataclass(frozen=True)
class Origin:
    """The event a write-back runs for, and the team of the Application (recorded on a pin)."""

    event_id: str
    team: str | None


@dataclass
class WriteOutcome:
    method: str
    changed: bool
    writes: list[ImageWrite] = field(default_factory=list)
    refused: dict[str, Verdict] = field(default_factory=dict)  # alias -> why not
    kept: dict[str, str] = field(
        default_factory=dict
    )  # alias -> value this event wrote on an earlier attempt
    where: str = ""
    commit: str | None = None
    conflicts: int = 0
    detail: dict[str, Any] = field(default_factory=dict)
    pinned: dict[str, Pin] = field(default_factory=dict)  # alias -> the pin this write-back set
    unpinned: dict[str, str] = field(default_factory=dict)  # alias -> why its pin was lifted


def _applied(record: dict[str, Any]) -> Current:
    """What the broker applied last for an image (GitOpsState.applied), as a current value."""
    return Current(
        tag=record.get("tag"),
        digest=record.get("digest"),
        pushed_at=record.get("pushed_at"),
        built_at=record.get("built_at"),
    )


def _decide(
    engine: Engine,
    app: str,
    chosen: Chosen,
    currents: Callable[[TrackedImage], list[Current]],
    deployed: Callable[[TrackedImage], Deployed],
    already: dict[str, str],
    origin: Origin,
    outcome: WriteOutcome,
) -> list[ImageWrite]:
    """The writes still needed; `already` holds values this very event wrote on an earlier attempt."""
    outcome.refused.clear()
    outcome.kept.clear()
    writes = []
    for alias, (tracked, candidate) in chosen.items():
        applied = engine.state.applied(app, alias) or {}
        ours = already.get(alias)
        pin = _pin(engine, app, tracked, deployed(tracked), applied.get("value"), ours, origin, outcome)
        if pin is not None:
            outcome.refused[alias] = Verdict(False, pin.refusal())
            continue
        value = tag_value(tracked.strategy, candidate)
        verdict = judge(tracked.strategy, candidate, [*currents(tracked), _applied(applied)])
        if verdict.accept:
            writes.append(ImageWrite(tracked, candidate.tag, candidate.digest, value))
        elif verdict.same and ours == value:
            outcome.kept[alias] = value
        else:
            outcome.refused[alias] = verdict
    return writes


def _pin(
    engine: Engine,
    app: str,
    tracked: TrackedImage,
    deployed: Deployed,
    written: str | None,
    ours: str | None,
    origin: Origin,
    outcome: WriteOutcome,
) -> Pin | None:
    """The pin that holds this image back: the one in force, or one set now because the workload deploys
    an older value than the broker applied last (a rollback made outside it: the value set by hand, or
    an Argo CD rollback). A pin is lifted once the workload deploys the applied value, or a later one,
    again. `written`: what the broker wrote last, a tag or tag@digest (the digest strategy), as the
    workload carries it. A value this event wrote on an earlier attempt (`ours`) is no rollback, and
    neither is the one an operator's unpin released."""
    carried = deployed.value or Current()
    pins = PinStore(engine.redis)
    alias = tracked.alias
    pin = pins.get(app, alias)
    if pin is not None:
        if not rolled_forward(tracked.strategy, carried, split_tag_value(pin.applied)):
            return pin
        pins.remove(app, alias)
        outcome.unpinned[alias] = f"unpinned: it carries {value_text(carried)} again ({pin.reason} before)"
        return None
    if ours is not None and value_text(carried) in (ours, ours.partition("@")[0]):
        return None
    reason = rolled_back(tracked.strategy, carried, split_tag_value(written))
    if reason is None or written is None or pins.released(app, alias) == written:
        return None
    if deployed.by:
        reason = f"{reason} ({deployed.by})"
    pin = pins.add(
        Pin(
            app=app,
            alias=alias,
            team=origin.team,
            image=tracked.written_image,
            strategy=tracked.strategy,
            applied=written,
            found=value_text(carried),
            reason=reason,
            event_id=origin.event_id,
            pinned_at=engine.now(),
        )
    )
    if pin.event_id == origin.event_id:
        outcome.pinned[alias] = pin
    return pin


def _git_source(live: dict[str, Any], tracked: TrackedImage) -> dict[str, Any]:
    chosen = select_source(live, tracked)
    return chosen[1] if chosen else {}


def write_argocd(
    engine: Engine, app: str, chosen: Chosen, already: dict[str, str], origin: Origin
) -> WriteOutcome:
    outcome = WriteOutcome(method="argocd", changed=False)
    aliases = engine.catalog.aliases

    def decide(live: dict[str, Any]) -> list[ImageWrite]:
        def currents(tracked: TrackedImage) -> list[Current]:
            return current_values(live, tracked, aliases)

        def deployed(tracked: TrackedImage) -> Deployed:
            return deployed_value(live, tracked)

        return _decide(engine, app, chosen, currents, deployed, already, origin, outcome)

    result = write_back_argocd(engine.kube, app, decide, retries=engine.settings.gitops_conflict_retries)
    outcome.changed, outcome.writes, outcome.conflicts = result.changed, result.writes, result.conflicts
    outcome.where = ", ".join(sorted({op["path"] for op in result.patch if op["op"] != "test"}))
    return outcome


def write_git(
    engine: Engine, app: str, chosen: Chosen, write_back: WriteBack, already: dict[str, str], origin: Origin
) -> WriteOutcome:
    outcome = WriteOutcome(method="git", changed=False)
    try:
        live = engine.kube.get_app(app)
    except NotFound as exc:
        raise PermanentError(f"Application {app} no longer exists") from exc
    first = next(iter(chosen.values()))[0]
    source = _git_source(live, first)
    repo_url = write_back.repository or source.get("repoURL") or ""
    if not repo_url:
        raise PermanentError(f"{app}: no repository to write back to")
    target = resolve_target(write_back, app, source.get("path") or "", is_kustomize(source, first))
    revision = source.get("targetRevision") or ""
    branch = write_back.branch or (revision if revision and revision != "HEAD" else "main")
    credentials = _credentials(engine, write_back, repo_url)
    aliases = engine.catalog.aliases

    def edit(text: str | None) -> str | None:
        def currents(tracked: TrackedImage) -> list[Current]:
            return [current_in_file(target, text, tracked), *current_values(live, tracked, aliases)]

        def deployed(tracked: TrackedImage) -> Deployed:
            return Deployed(current_in_file(target, text, tracked))

        writes = _decide(engine, app, chosen, currents, deployed, already, origin, outcome)
        outcome.writes = writes
        return edit_file(target, text, writes) if writes else None

    lines = "\n".join(f"- {w.image.written_image}: {w.value}" for w in _preview(chosen))
    message = (
        f"build: automatic update of {app} [ci skip]\n\n{lines}\n\n"
        f"Requested by webhook-broker event {origin.event_id}.\n{WRITEBACK_MARKER}\n"
    )
    result = engine.git.write(
        repo_url=repo_url,
        branch=branch,
        base_branch=write_back.base_branch,
        path=target.path,
        edit=edit,
        message=message,
        credentials=credentials,
    )
    outcome.changed, outcome.commit = result.changed, result.commit
    outcome.where = f"{normalize_repo_url(repo_url)}@{branch}:{target.path}"
    outcome.detail = {"target": target.kind, "push_attempts": result.attempts}
    return outcome


def _preview(chosen: Chosen) -> Sequence[ImageWrite]:
    return [ImageWrite(t, c.tag, c.digest, tag_value(t.strategy, c)) for t, c in chosen.values()]


def _credentials(engine: Engine, write_back: WriteBack, repo_url: str) -> tuple[str | None, str | None]:
    """The Secret's username/password for http(s) remotes; local paths, file:// and git:// need none."""
    if not write_back.secret or not repo_url.lower().startswith(("http://", "https://")):
        return None, None
    try:
        return engine.kube.secret_credentials(write_back.secret)
    except NotFound as exc:
        raise PermanentError(f"git credentials Secret {write_back.secret} not found") from exc

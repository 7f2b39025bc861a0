"""The two steps every flow ends with, for one Application: ask Argo CD to act (sync, refresh, or nothing
when auto-sync will do it), at most once per event; then start following what it did (follow_job.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker import metrics
from broker.errors import TransientError
from broker.executors.sync_k8s import SyncRequest
from broker.gitops.engine import Engine, notice_data
from broker.gitops.follow_job import start_follow
from handlers.models import Action
from handlers.notices import Notice


@dataclass
class StepResult:
    actions: list[Action] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    requested: bool = False
    since: float = 0.0
    explicit: bool = False  # an explicit sync we can recognise by our event id


def request_step(
    engine: Engine,
    *,
    event_id: str,
    app: str,
    team: str | None,
    mode: str,
    revision: str | None,
    reason: str,
    auto_sync: bool,
    deployment_id: str | None,
) -> StepResult:
    """mode: "sync" | "refresh" | "none" (auto-sync picks the change up by itself)."""
    out = StepResult()
    now = engine.now()
    progress = engine.state.progress(event_id, app)
    done = progress.get("sync")
    # An earlier attempt that died while asking for a sync may have had it land all the same.
    asked = not done and mode == "sync" and progress.get("asking")
    if asked and engine.own_operation(app, event_id):
        done = {"mode": "sync", "at": now.timestamp()}
        engine.state.mark(event_id, app, "sync", done)
    if done:
        out.requested, out.since, out.explicit = True, float(done.get("at", 0)), done.get("mode") == "sync"
        text = f"{done.get('mode')} already requested by this event (re-run): not asking twice"
        out.actions.append(Action(kind=str(done.get("mode")), target=app, decision=text, at=now))
        return out
    if mode == "none":
        out.requested, out.since = True, now.timestamp()
        out.actions.append(
            Action(kind="sync", target=app, decision=reason, result="no explicit sync", at=now)
        )
        engine.state.mark(event_id, app, "sync", {"mode": "none", "at": out.since})
    else:
        engine.state.mark(event_id, app, "asking", {"mode": mode, "at": now.timestamp()})
        result = engine.request(
            SyncRequest(app=app, mode=mode, revision=revision, reason=reason, event_id=event_id)
        )
        via, answer = ("rest" if engine.rest else "k8s"), ("requested" if result.requested else "in_flight")
        metrics.record_sync(engine.redis, mode, answer, via=via)  # ops metrics (broker/metrics.py)
        if not result.requested:
            if auto_sync:
                text = f"{result.detail}; auto-sync will apply the change after it"
                out.actions.append(Action(kind=mode, target=app, decision=text, result="skipped", at=now))
                engine.set_rollout(deployment_id, app, sync_mode="none", sync_reason=text, status="syncing")
                out.requested, out.since = True, now.timestamp()
                return out
            raise TransientError(f"{app}: {result.detail}; the sync is retried later")
        out.requested, out.since, out.explicit = True, result.requested_at, mode == "sync"
        engine.state.mark(event_id, app, "sync", {"mode": mode, "at": result.requested_at})
        out.actions.append(
            Action(
                kind=mode,
                target=app,
                decision=reason,
                result=result.detail,
                detail={
                    "conflicts": result.conflicts,
                    "revision": revision,
                    "via": "rest" if engine.rest else "k8s",
                },
                at=now,
            )
        )
        summary = f"{app}: {mode} requested ({reason})"
        dep = engine.deployments.get(deployment_id) if deployment_id else None
        out.notices.append(
            Notice(
                kind="sync.started",
                team=team,
                app=app,
                event_id=event_id,
                deployment_id=deployment_id,
                summary=summary,
                data=notice_data(dep, app, mode=mode, revision=revision),
            )
        )
    engine.set_rollout(deployment_id, app, sync_mode=mode, sync_reason=reason, status="syncing")
    return out


def follow_later(
    engine: Engine,
    step: StepResult,
    *,
    event_id: str,
    app: str,
    team: str | None,
    deployment_id: str | None,
) -> bool:
    """Start following the Application after `step` in short jobs of their own (follow_job.py); they
    record the result on the event and the deployment and tell the team. False when not following."""
    if not step.requested:
        return False
    return start_follow(
        engine,
        event_id=event_id,
        app=app,
        team=team,
        deployment_id=deployment_id,
        since=step.since,
        explicit=step.explicit,
    )


def step_summary(step: StepResult, following: bool) -> str:
    """The tail of an event's reason for one Application: what Argo CD was asked, and whether the broker
    is following it."""
    last = step.actions[-1] if step.actions else None
    if last is None:
        asked = "nothing requested"
    elif last.result in ("no explicit sync", "skipped"):
        asked = "auto-sync applies it"
    else:
        asked = f"{last.kind} requested"
    return f"{asked}; following" if following else asked

"""Gitea push -> refresh or sync of every Application following the pushed repo and ref (Argo CD's own
webhook matching, plus the sync Argo CD's webhook never does), and the commit side of the deployment
record that Drone builds and Harbor pushes link to later."""

from __future__ import annotations

from broker.deployments import Deployment, new_id
from broker.gitops.engine import Engine
from broker.gitops.steps import StepResult, follow_later, request_step, step_summary
from handlers.gitops_actions import CommitInfo
from handlers.models import Event, Outcome
from handlers.notices import Notice
from handlers.plan_gitea import plan_gitea


def _deployment_for(engine: Engine, event: Event, commit: CommitInfo) -> str:
    store = engine.deployments
    found = store.for_event(event.id) or store.by_commit(commit.sha)
    if found is None:
        deployment = Deployment(
            id=new_id(),
            team=commit.team,
            repo=commit.repo,
            commit=commit.sha or None,
            commit_message=commit.message.strip() or None,
            commit_url=commit.url,
            pusher=commit.pusher,
            ref=commit.ref,
        )
        return store.create(deployment, event_id=event.id).id

    def change(dep: Deployment) -> None:
        dep.fill(event_id=event.id, team=commit.team)
        if not commit.own_writeback:  # our own write-back commit keeps the record's source commit
            message = commit.message.strip() or None
            dep.fill(
                repo=commit.repo,
                commit_message=message,
                commit_url=commit.url,
                pusher=commit.pusher,
                ref=commit.ref,
            )

    store.update(found, change)
    return found


def process_gitea(engine: Engine, event: Event) -> Outcome:
    now = engine.now()
    plan = plan_gitea(
        event, engine.catalog, now=now, sync_manual_apps=engine.settings.gitops_gitea_sync_manual_apps
    )
    actions = list(plan.actions)
    if plan.ignored or plan.commit is None:
        return Outcome(status="ignored", reason=plan.reason, actions=actions)
    deployment_id = _deployment_for(engine, event, plan.commit)
    if not plan.triggers:
        return Outcome(status="ignored", reason=plan.reason, actions=actions, deployment_id=deployment_id)
    notices: list[Notice] = []
    requested: list[tuple[str, str | None, StepResult]] = []
    settings = engine.settings
    for trigger in plan.triggers:
        entry = engine.catalog.app(trigger.app)
        with engine.state.app_lock(
            trigger.app, ttl_s=settings.gitops_lock_ttl_s, wait_s=settings.gitops_lock_wait_s
        ):
            step = request_step(
                engine,
                event_id=event.id,
                app=trigger.app,
                team=trigger.team,
                mode=trigger.mode,
                revision=trigger.revision,
                reason=trigger.why,
                auto_sync=bool(entry and entry.auto_sync),
                deployment_id=deployment_id,
            )
        actions += step.actions
        notices += step.notices
        requested.append((trigger.app, trigger.team, step))
    summaries = []
    for app, team, step in requested:
        if plan.commit.own_writeback:
            summaries.append(f"{app}: refreshed")
            continue  # the update that made this commit follows the rollout
        following = follow_later(
            engine, step, event_id=event.id, app=app, team=team, deployment_id=deployment_id
        )
        summaries.append(f"{app}: {step_summary(step, following)}")
    reason = f"{plan.reason}: " + "; ".join(summaries)
    return Outcome(
        status="done", reason=reason, actions=actions, deployment_id=deployment_id, notices=notices
    )

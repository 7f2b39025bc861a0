"""Drone build (final status) -> the build side of the deployment record: linked to its commit (from the
Gitea push, if seen), and, for a tag build, to the tag its image will be pushed under."""

from __future__ import annotations

from broker.deployments import Deployment, new_id
from broker.gitops.engine import Engine, notice_data
from handlers.models import Event, Outcome
from handlers.notices import Notice
from handlers.plan_drone import plan_drone


def process_drone(engine: Engine, event: Event) -> Outcome:
    plan = plan_drone(event, now=engine.now())
    actions = list(plan.actions)
    if plan.build.status not in ("success", "failure", "killed", "error", "declined"):
        return Outcome(status="ignored", reason=plan.reason, actions=actions)
    store = engine.deployments
    found = store.for_event(event.id) or store.by_commit(plan.commit, team=plan.team)
    if found is None:
        deployment = Deployment(
            id=new_id(),
            team=plan.team,
            repo=plan.repo,
            commit=plan.commit,
            commit_message=plan.message,
            build=plan.build,
        )
        found = store.create(deployment, event_id=event.id).id
    else:

        def change(dep: Deployment) -> None:
            dep.build = plan.build
            dep.fill(
                event_id=event.id,
                team=plan.team,
                repo=plan.repo,
                commit=plan.commit,
                commit_message=plan.message,
            )

        store.update(found, change)
    if plan.tag:
        store.link_tag(plan.team, plan.tag, found)
    dep = store.get(found)
    kind = "build.succeeded" if plan.succeeded else "build.failed"
    number = plan.build.number if plan.build.number is not None else "?"
    notice = Notice(
        kind=kind,
        team=plan.team,
        event_id=event.id,
        deployment_id=found,
        summary=f"{plan.repo or 'build'} #{number} {plan.build.status}",
        data=notice_data(dep, "", repo=plan.repo, tag=plan.tag, status=plan.build.status),
    )
    return Outcome(status="done", reason=plan.reason, actions=actions, deployment_id=found, notices=[notice])

"""Harbor PUSH_ARTIFACT -> image update of every matching workload, then sync (followed by jobs of its own).

Per Application: offer the candidate, wait out the coalescing window, take the writer lock, gather the
burst (pending offers of concurrent workers and pushes still queued), settle on the best candidate per
image, write it back once, sync once. Every other event of the burst is answered "coalesced into event X".
Progress is recorded per (event, app), so a re-run after a crash neither writes nor syncs twice."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from broker import metrics
from broker.deployments import Deployment, new_id
from broker.executors.harbor_api import HarborUnavailable
from broker.gitops.engine import Engine, notice_data
from broker.gitops.queued import queued_candidates
from broker.gitops.steps import follow_later, request_step, step_summary
from broker.gitops.writeback import Chosen, Origin, WriteOutcome, write_argocd, write_git
from broker.kube import NotFound
from handlers.catalog_parse import WriteBack, parse_application
from handlers.gitops_actions import ImageUpdate
from handlers.image_refs import image_text
from handlers.image_strategies import Candidate, best, tag_value
from handlers.models import Action, Event, Outcome
from handlers.notices import Notice
from handlers.plan_harbor import plan_harbor
from handlers.rollback import Pin


@dataclass
class AppResult:
    actions: list[Action] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    summary: str = ""
    deployment_id: str | None = None


def process_harbor(engine: Engine, event: Event) -> Outcome:
    now = engine.now()
    if event.type != "artifact_push":
        reason = f"harbor {event.type} events deploy nothing"
        return Outcome(
            status="ignored",
            reason=reason,
            actions=[Action(kind="plan", target="harbor", decision=reason, at=now)],
        )
    plan = plan_harbor(event, engine.catalog, now=now)
    actions = list(plan.actions)
    if not plan.updates:
        return Outcome(status="ignored", reason=plan.reason, actions=actions)
    updates = _with_build_time(engine, event, plan.updates, actions)
    linked: list[str] = []

    def deployment() -> str:
        """Created (or found) only once an update really goes ahead: a push folded into another
        event's update belongs to that event's deployment instead."""
        if not linked:
            linked.append(_deployment_for(engine, event))
        return linked[0]

    by_app: dict[str, list[ImageUpdate]] = defaultdict(list)
    for update in updates:
        by_app[update.app].append(update)
    notices: list[Notice] = []
    summaries = []
    elsewhere: list[str] = []
    for app in sorted(by_app):
        result = _update_app(engine, event, app, by_app[app], deployment)
        if result.deployment_id and not linked:
            elsewhere.append(result.deployment_id)
        actions += result.actions
        notices += result.notices
        summaries.append(f"{app}: {result.summary}")
    return Outcome(
        status="done",
        reason="; ".join(summaries),
        actions=actions,
        deployment_id=linked[0] if linked else (elsewhere[0] if elsewhere else None),
        notices=notices,
    )


def _with_build_time(
    engine: Engine, event: Event, updates: tuple[ImageUpdate, ...], actions: list[Action]
) -> tuple[ImageUpdate, ...]:
    """`newest-build` orders by build time, which Harbor's webhook leaves out: ask its API once per push
    (every update offers the same artifact). Without it, or when Harbor cannot say, push time decides."""
    if engine.harbor is None or not event.digest or event.image is None:
        return updates
    if not any(u.image.strategy == "newest-build" for u in updates):
        return updates
    target = image_text(event.image, event.tag, event.digest)
    try:
        built = engine.harbor.built_at(event.image, event.digest)
    except HarborUnavailable as exc:
        text = f"build time unknown ({exc}): newest-build orders by push time"
        actions.append(Action(kind="build-time", target=target, decision=text, at=engine.now()))
        return updates
    stamp = datetime.fromtimestamp(built, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = f"built {stamp} (Harbor)"
    actions.append(Action(kind="build-time", target=target, decision=text, at=engine.now()))

    def stamped(update: ImageUpdate) -> ImageUpdate:
        return replace(update, candidate=replace(update.candidate, built_at=built))

    return tuple(stamped(u) if u.image.strategy == "newest-build" else u for u in updates)


def _deployment_for(engine: Engine, event: Event) -> str:
    """The rollout this push belongs to: the one already linked to the event (re-run), the one whose
    commit the tag names (sha or prefix), the tag build's, or a new one."""
    store = engine.deployments
    found = (
        store.for_event(event.id)
        or store.by_commit(event.tag, team=event.team)
        or store.by_tag(event.team, event.tag)
    )
    if found is None:
        deployment = Deployment(
            id=new_id(), team=event.team, image=event.image, tag=event.tag, digest=event.digest
        )
        return store.create(deployment, event_id=event.id).id

    def change(dep: Deployment) -> None:
        if dep.image is None or (dep.image == event.image and dep.tag == event.tag):
            dep.image, dep.tag, dep.digest = event.image, event.tag, event.digest
        dep.fill(event_id=event.id, team=event.team)

    store.update(found, change)
    return found


def _update_app(
    engine: Engine, event: Event, app: str, updates: list[ImageUpdate], deployment: Callable[[], str]
) -> AppResult:
    settings, state = engine.settings, engine.state
    out = AppResult()
    team = updates[0].team
    into = state.coalesced_into(event.id, app)
    if into:
        return _coalesced(engine, event, app, into)
    if not state.progress(event.id, app):
        for update in updates:
            state.offer(app, update.image.alias, update.candidate)
    window_s = settings.gitops_coalesce_window_ms / 1000.0
    wait = event.received_at.timestamp() + window_s - time.time()
    if wait > 0:
        engine.sleep(min(wait, window_s))
    with state.app_lock(app, ttl_s=settings.gitops_lock_ttl_s, wait_s=settings.gitops_lock_wait_s):
        into = state.coalesced_into(event.id, app)
        if into:
            return _coalesced(engine, event, app, into)
        group = state.load_group(event.id, app)
        if group is None:
            group = _gather(engine, event, app, updates, window_s)
            state.save_group(event.id, app, group)
        chosen = _choose(engine, app, updates, group)
        members = sorted({c.event_id for cs in group.values() for c in cs} - {event.id})
        if members:
            text = f"coalesced {len(members) + 1} pushes into one update: " + ", ".join(members)
            out.actions.append(
                Action(
                    kind="coalesce", target=app, decision=text, detail={"events": members}, at=engine.now()
                )
            )
        deployment_id = deployment()
        try:
            live = engine.kube.get_app(app)
        except NotFound:
            out.actions.append(
                Action(
                    kind="write-back", target=app, decision="Application no longer exists", at=engine.now()
                )
            )
            out.summary = "Application no longer exists"
            return out
        entry = parse_application(live, engine.catalog.aliases)
        progress = state.progress(event.id, app)
        done = dict(progress.get("written") or {})
        # Write-ahead: a worker killed after its write landed but before "written" was marked leaves the
        # value in place; the retry then knows it for its own (kept), and still syncs it.
        earlier = dict(progress.get("intended") or {})
        state.mark(event.id, app, "intended", {**earlier, **_intended(chosen)})
        already = {**earlier, **done}
        outcomes = _write_back(engine, app, chosen, already, Origin(event.id, team))
        written = {w.image.alias: w.value for o in outcomes for w in o.writes if o.changed}
        kept = {
            alias: value for o in outcomes for alias, value in o.kept.items()
        }  # written on a past attempt
        for alias, (_tracked, cand) in chosen.items():
            value = written.get(alias) or kept.get(alias)
            if value:
                state.record_applied(app, alias, cand, value)
        if written:
            state.mark(event.id, app, "written", {**done, **written})
        dep = _record_writes(engine, deployment_id, app, outcomes, chosen)
        for outcome in outcomes:
            out.actions.extend(_write_actions(engine, app, outcome))
            out.notices += [
                _pinned_notice(event, pin, team, deployment_id) for pin in outcome.pinned.values()
            ]
        if not written and not kept:
            reasons = "; ".join(v.reason for o in outcomes for v in o.refused.values()) or "nothing to change"
            engine.set_rollout(deployment_id, app, status="unchanged", write=reasons)
            out.summary = reasons
            return out
        out.notices.append(_image_notice(event, app, team, dep, deployment_id))
        if written:
            out.notices.append(_written_notice(event, app, team, dep, outcomes, deployment_id))
        auto_sync = bool(entry and entry.auto_sync)
        methods = {o.method for o in outcomes if o.changed or o.kept}
        mode, why = _sync_mode(auto_sync, methods)
        step = request_step(
            engine,
            event_id=event.id,
            app=app,
            team=team,
            mode=mode,
            revision=None,
            reason=why,
            auto_sync=auto_sync,
            deployment_id=deployment_id,
        )
        out.actions += step.actions
        out.notices += step.notices
    following = follow_later(engine, step, event_id=event.id, app=app, team=team, deployment_id=deployment_id)
    values = ", ".join(f"{a}={v}" for a, v in sorted({**kept, **written}.items()))
    decision = step.actions[-1].decision if step.actions else mode
    out.summary = f"updated {values}; {decision}; {step_summary(step, following)}"
    return out


def _coalesced(engine: Engine, event: Event, app: str, into: str) -> AppResult:
    text = f"coalesced into event {into}"
    other = engine.deployments.for_event(into)
    if other:
        engine.attach_event(other, event.id)
    return AppResult(
        actions=[
            Action(
                kind="coalesce",
                target=app,
                decision=text,
                detail={"into": into, "deployment_id": other},
                at=engine.now(),
            )
        ],
        summary=text,
        deployment_id=other,
    )


def _gather(
    engine: Engine, event: Event, app: str, updates: list[ImageUpdate], window_s: float
) -> dict[str, list[Candidate]]:
    group: dict[str, list[Candidate]] = defaultdict(list)
    for alias, candidates in engine.state.take_pending(app).items():
        group[alias].extend(candidates)
    queued = queued_candidates(engine.redis, engine.catalog, event, app, window_s, now=engine.now())
    for alias, candidates in queued.items():
        group[alias].extend(candidates)
    for update in updates:
        group[update.image.alias].append(update.candidate)
    deduped: dict[str, list[Candidate]] = {}
    for alias, candidates in group.items():
        by_event = {c.event_id: c for c in candidates}
        deduped[alias] = sorted(by_event.values(), key=lambda c: c.event_id)
    return deduped


def _choose(
    engine: Engine, app: str, updates: list[ImageUpdate], group: dict[str, list[Candidate]]
) -> Chosen:
    tracked = {t.alias: t for t in engine.catalog.tracked(app)}
    tracked.update({u.image.alias: u.image for u in updates})
    chosen: Chosen = {}
    for alias, candidates in group.items():
        image = tracked.get(alias)
        if image is not None and candidates:
            chosen[alias] = (image, best(image.strategy, candidates))
    return chosen


def _write_back(
    engine: Engine, app: str, chosen: Chosen, already: dict[str, str], origin: Origin
) -> list[WriteOutcome]:
    """One write per write-back configuration (usually one for the whole Application)."""
    groups: dict[WriteBack, Chosen] = defaultdict(dict)
    for alias, pair in chosen.items():
        groups[pair[0].write_back][alias] = pair
    outcomes = []
    for write_back, part in groups.items():
        if write_back.method == "git":
            outcomes.append(write_git(engine, app, part, write_back, already, origin))
        else:
            outcomes.append(write_argocd(engine, app, part, already, origin))
        written = "written" if outcomes[-1].changed else "unchanged"
        metrics.record_writeback(engine.redis, outcomes[-1].method, written)  # ops metrics
    return outcomes


def _intended(chosen: Chosen) -> dict[str, str]:
    return {alias: tag_value(tracked.strategy, cand) for alias, (tracked, cand) in chosen.items()}


def _sync_mode(auto_sync: bool, methods: set[str]) -> tuple[str, str]:
    if not auto_sync:
        return "sync", "auto-sync is off: an explicit sync deploys the update"
    if "git" in methods:
        return "refresh", "auto-sync is on: a refresh makes Argo CD see the new commit now and sync it"
    return "none", "auto-sync is on: Argo CD syncs the changed Application spec by itself"


def _write_actions(engine: Engine, app: str, outcome: WriteOutcome) -> list[Action]:
    now = engine.now()
    acts = []
    for alias, why in sorted(outcome.unpinned.items()):
        acts.append(Action(kind="pin", target=f"{app}/{alias}", decision=why, result="unpinned", at=now))
    for alias, pin in sorted(outcome.pinned.items()):
        acts.append(
            Action(
                kind="pin",
                target=f"{app}/{alias}",
                decision=f"pinned: {pin.reason}; the broker leaves it there until it is unpinned",
                result="pinned",
                detail=pin.model_dump(mode="json"),
                at=now,
            )
        )
    for alias, verdict in sorted(outcome.refused.items()):
        acts.append(
            Action(
                kind="write-back", target=f"{app}/{alias}", decision=verdict.reason, result="skipped", at=now
            )
        )
    if outcome.kept:
        values = ", ".join(f"{alias}={value}" for alias, value in sorted(outcome.kept.items()))
        text = f"already carries {values} (written by this event on an earlier attempt)"
        acts.append(Action(kind="write-back", target=app, decision=text, result="unchanged", at=now))
    if outcome.writes:
        values = ", ".join(f"{w.image.alias}={w.value}" for w in outcome.writes)
        decision = (
            f"{outcome.method} write-back: {values}" if outcome.changed else f"already carries {values}"
        )
        detail = {
            "where": outcome.where,
            "commit": outcome.commit,
            "conflicts": outcome.conflicts,
            **outcome.detail,
        }
        acts.append(
            Action(
                kind="write-back",
                target=app,
                decision=decision,
                result="written" if outcome.changed else "unchanged",
                detail=detail,
                at=now,
            )
        )
    return acts


def _record_writes(
    engine: Engine, deployment_id: str, app: str, outcomes: list[WriteOutcome], chosen: Chosen
) -> Deployment | None:
    images = [image_text(t.written_image, c.tag, c.digest) for t, c in chosen.values()]
    changed = [o for o in outcomes if o.changed]
    commit = next((o.commit for o in changed if o.commit), None)
    if commit:
        engine.deployments.link_commit(commit, deployment_id)
    write = "; ".join(f"{o.method}: {o.where}" for o in changed) or None
    return engine.set_rollout(
        deployment_id,
        app,
        image=", ".join(images),
        method=",".join(sorted({o.method for o in outcomes})),
        write=write,
        git_commit=commit,
        status="updating",
    )


def _notice(
    kind: str, event: Event, app: str, team: str | None, deployment_id: str, summary: str, data: dict
) -> Notice:
    return Notice(
        kind=kind,
        team=team,
        app=app,
        event_id=event.id,
        deployment_id=deployment_id,
        summary=summary,
        data=data,
    )


def _image_notice(
    event: Event, app: str, team: str | None, dep: Deployment | None, deployment_id: str
) -> Notice:
    pushed = image_text(event.image or "", event.tag, event.digest)
    data = notice_data(dep, app, pushed=pushed, harbor_operator=(event.payload or {}).get("operator"))
    return _notice(
        "image.pushed", event, app, team, deployment_id, f"{pushed} pushed; tracked by {app}", data
    )


def _pinned_notice(event: Event, pin: Pin, team: str | None, deployment_id: str) -> Notice:
    summary = f"{pin.app}: {pin.image} stays at {pin.found} ({pin.reason}); `broker unpin {pin.key}` resumes"
    return _notice("update.pinned", event, pin.app, team, deployment_id, summary, pin.model_dump(mode="json"))


def _written_notice(
    event: Event,
    app: str,
    team: str | None,
    dep: Deployment | None,
    outcomes: list[WriteOutcome],
    deployment_id: str,
) -> Notice:
    values = ", ".join(f"{w.image.written_image}:{w.value}" for o in outcomes if o.changed for w in o.writes)
    where = "; ".join(f"{o.method} {o.where}" for o in outcomes if o.changed)
    commit = next((o.commit for o in outcomes if o.commit), None)
    data = notice_data(dep, app, written=values, where=where, writeback_commit=commit)
    return _notice("update.written", event, app, team, deployment_id, f"{app} now set to {values}", data)

"""Gitea push -> refresh or sync of every Application that follows the pushed repo and ref, filtered by
`manifest-generate-paths`. Deletions and test deliveries never deploy."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from handlers.catalog import AppEntry, Catalog
from handlers.git_urls import (
    ZERO_SHA,
    PushedRef,
    changed_files,
    files_match,
    normalize_repo_url,
    refresh_paths,
    revision_matches,
)
from handlers.gitops_actions import WRITEBACK_MARKER, AppTrigger, CommitInfo, GiteaPlan, TriggerMode, decision
from handlers.models import Event, team_id


def _commit(event: Event, payload: dict[str, Any], ref: str) -> CommitInfo:
    commits = payload.get("commits") or []
    head = payload.get("head_commit") or (commits[0] if commits else {}) or {}
    repo = payload.get("repository") or {}
    pusher = payload.get("pusher") or payload.get("sender") or {}
    sha = head.get("id") or payload.get("after") or event.commit or ""
    message = head.get("message") or ""
    full_name = repo.get("full_name") or event.repo
    owner = (repo.get("owner") or {}).get("login") or (full_name or "").split("/")[0]
    return CommitInfo(
        sha=sha,
        message=message,
        url=head.get("url"),
        pusher=pusher.get("login") or pusher.get("username"),
        repo=full_name,
        ref=ref,
        team=event.team or team_id(owner),
        own_writeback=WRITEBACK_MARKER in message,
    )


def _mode(app: AppEntry, commit: CommitInfo, sync_manual_apps: bool) -> tuple[TriggerMode, str]:
    if commit.own_writeback:
        return "refresh", "the broker's own write-back commit: its update already asked for the sync"
    if app.auto_sync:
        return "refresh", "auto-sync is on: a refresh lets Argo CD sync the new revision itself"
    if sync_manual_apps:
        return "sync", "auto-sync is off: an explicit sync deploys the new revision"
    return "refresh", "auto-sync is off and explicit syncs for Gitea pushes are disabled: refresh only"


def plan_gitea(event: Event, catalog: Catalog, *, now: datetime, sync_manual_apps: bool = True) -> GiteaPlan:
    payload = event.payload or {}
    ref = payload.get("ref") or event.ref or ""
    if ref and not ref.startswith("refs/"):
        ref = f"refs/{'tags' if event.type == 'tag' else 'heads'}/{ref}"
    pushed = PushedRef.parse(ref)
    before, after = str(payload.get("before") or ""), str(payload.get("after") or event.commit or "")
    repo = payload.get("repository") or {}
    target = repo.get("full_name") or event.repo or "gitea"
    if after and ZERO_SHA.match(after):
        act = decision(
            "match", target, f"{pushed.kind} {pushed.name} deleted: deletions never deploy", now=now
        )
        return GiteaPlan(None, (), (act,), act.decision, ignored=True)
    if before and before == after:
        act = decision("match", target, "test delivery (before == after): never deploys", now=now)
        return GiteaPlan(None, (), (act,), act.decision, ignored=True)
    commit = _commit(event, payload, ref)
    urls = [u for u in (repo.get("clone_url"), repo.get("html_url"), repo.get("ssh_url")) if u]
    apps: dict[str, AppEntry] = {app.name: app for url in urls for app in catalog.apps_for_repo(url)}
    if not apps:
        act = decision("match", target, "no Application tracks this repository", now=now, urls=urls)
        return GiteaPlan(commit, (), (act,), f"no Application tracks {target}")
    pushed_keys = {normalize_repo_url(u) for u in urls}
    default_branch = repo.get("default_branch")
    files, complete = changed_files(payload)
    triggers: list[AppTrigger] = []
    actions = []
    for name in sorted(apps):
        app = apps[name]
        sources = [s for s in app.sources if s.repo_key in pushed_keys]
        if not any(revision_matches(s.target_revision, pushed, default_branch) for s in sources):
            revisions = ", ".join(sorted({s.target_revision or "HEAD" for s in sources}))
            text = f"targetRevision {revisions} does not follow {pushed.kind} {pushed.name}"
            actions.append(decision("match", name, text, now=now))
            continue
        paths = refresh_paths(app.generate_paths, [s.path for s in app.sources if s.path])
        if paths is not None and complete and not files_match(paths, files):
            text = f"no changed file under manifest-generate-paths {app.generate_paths}"
            actions.append(decision("match", name, text, now=now, changed_files=files[:50]))
            continue
        mode, why = _mode(app, commit, sync_manual_apps)
        revision = commit.sha if mode == "sync" and len(app.sources) == 1 else None
        triggers.append(AppTrigger(app=name, team=app.team, mode=mode, revision=revision, why=why))
    if triggers:
        reason = f"{pushed.kind} {pushed.name} of {target} concerns {len(triggers)} Application(s)"
    else:
        reason = (
            actions[0].decision
            if len(actions) == 1
            else f"no Application follows {pushed.kind} {pushed.name}"
        )
    return GiteaPlan(commit, tuple(triggers), tuple(actions), reason)

"""Fixtures and object builders for the GitOps tests: Applications exactly as Otomi (annotations, classic)
and APL (two sources + an ImageUpdater CR) create them, real git repositories on disk, a GitOps engine
wired to the emulator over real HTTP, and the worker around it (intake's writes, then rq burst workers
with the scheduler until the event and its sync follow-up jobs are done). The fixtures live in
tests/gitops_plugin.py (`pytest_plugins`)."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rq.registry import ScheduledJobRegistry
from ulid import ULID

from broker.settings import Settings
from broker.store import enqueue_event_job, write_event
from broker.worker import WorkerContext, install
from handlers.models import Event
from handlers.notices import Notice
from tests.argocd_emulator import APPS, UPDATERS, ArgoEmulator
from tests.notify_support import run_worker, work_until
from tests.worker_support import make_context

HARBOR = "harbor.example.com"
IU = "argocd-image-updater.argoproj.io"


def classic_app(
    team: str,
    name: str,
    *,
    strategy: str = "semver",
    constraint: str = "1.4",
    tag: str = "main",
    repo_url: str = "https://gitea.example.com/otomi/charts.git",
    path: str = "k8s-deployment",
    params: list[dict[str, Any]] | None = None,
    write_back: str | None = None,
    auto_sync: bool = False,
    extra_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """otomi-core's ApplicationSet template output (OTOMI.md §1.3, 2023-09 -> 2025-11), one source."""
    alias = f"team-{team}-{name}"
    image = f"{HARBOR}/team-{team}/{name}"
    annotations = {
        f"{IU}/{alias}.force-update": "true",
        f"{IU}/{alias}.pull-secret": f"pullsecret:argocd/copy-team-{team}-harbor-pullsecret",
        f"{IU}/git-branch": "main",
        f"{IU}/write-back-method": write_back or f"git:secret:argocd/team-{team}-gitea-repo-creds",
        f"{IU}/image-list": f"{alias}={image}:~{constraint}"
        if strategy == "semver"
        else f"{alias}={image}:{tag}",
        f"{IU}/{alias}.update-strategy": strategy,
        f"{IU}/{alias}.helm.image-name": "image.repository",
        f"{IU}/{alias}.helm.image-tag": "image.tag",
    }
    annotations.update(extra_annotations or {})
    spec: dict[str, Any] = {
        "project": f"team-{team}",
        "source": {
            "repoURL": repo_url,
            "targetRevision": "HEAD",
            "path": path,
            "chart": "",
            "helm": {"releaseName": name, "values": "image:\n  repository: x\n", "parameters": params or []},
        },
        "destination": {"server": "https://kubernetes.default.svc", "namespace": f"team-{team}"},
    }
    if auto_sync:
        spec["syncPolicy"] = {"automated": {"allowEmpty": False, "prune": False, "selfHeal": True}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": alias, "namespace": "argocd", "annotations": annotations},
        "spec": spec,
    }


def apl_app(
    team: str,
    name: str,
    *,
    values_repo: str,
    chart_repo: str = "https://github.com/linode/apl-charts.git",
    auto_sync: bool = True,
) -> dict[str, Any]:
    """apl-core >= v4.13 `argocd-application-workload.yaml`: chart source + `ref: values` source."""
    spec: dict[str, Any] = {
        "project": f"team-{team}",
        "sources": [
            {
                "repoURL": chart_repo,
                "targetRevision": "main",
                "path": "knative-service",
                "chart": "",
                "helm": {
                    "releaseName": name,
                    "valueFiles": [
                        f"$values/env/teams/{team}/workloadValues/{name}.yaml",
                        f"$values/env/teams/{team}/workloadValues/{name}.managed.yaml",
                    ],
                },
            },
            {"repoURL": values_repo, "targetRevision": "main", "ref": "values"},
        ],
        "destination": {"server": "https://kubernetes.default.svc", "namespace": f"team-{team}"},
    }
    if auto_sync:
        spec["syncPolicy"] = {"automated": {"allowEmpty": False, "prune": False, "selfHeal": True}}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"team-{team}-{name}",
            "namespace": "argocd",
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
            "annotations": {"argocd.argoproj.io/sync-options": "SkipDryRunOnMissingResource=true"},
        },
        "spec": spec,
    }


def apl_updater(team: str, workloads: list[tuple[str, str, str]], *, values_repo: str) -> dict[str, Any]:
    """apl-core `argocd-image-updater.yaml`: one CR per team; workloads = (name, type, constraint-or-tag)."""
    refs = []
    for name, kind, spec in workloads:
        refs.append(
            {
                "namePattern": f"team-{team}-{name}",
                "images": [
                    {
                        "alias": f"team-{team}-{name}",
                        "commonUpdateSettings": {"updateStrategy": kind},
                        "imageName": f"{HARBOR}/team-{team}/{name}:{spec}",
                        "manifestTargets": {"helm": {"name": "image.repository", "tag": "image.tag"}},
                    }
                ],
                "writeBackConfig": {
                    "gitConfig": {
                        "writeBackTarget": f"helmvalues:/env/teams/{team}/workloadValues/{name}.managed.yaml"
                    }
                },
            }
        )
    return {
        "apiVersion": f"{IU}/v1alpha1",
        "kind": "ImageUpdater",
        "metadata": {"name": f"team-{team}", "namespace": "argocd"},
        "spec": {
            "namespace": "argocd",
            "commonUpdateSettings": {
                "forceUpdate": True,
                "pullSecret": f"pullsecret:argocd/copy-team-{team}-harbor-pullsecret",
            },
            "writeBackConfig": {"method": "git", "gitConfig": {"branch": "main", "repository": values_repo}},
            "applicationRefs": refs,
        },
    }


def harbor_event(
    team: str,
    name: str,
    tag: str,
    *,
    digest: str = "sha256:" + "a" * 64,
    occur_at: int | None = None,
    host: str = HARBOR,
    received_at: datetime | None = None,
) -> Event:
    now = received_at or datetime.now(UTC)
    return Event(
        id=str(ULID.from_datetime(now)),  # as the store does: ids sort by receipt time
        source="harbor",
        type="artifact_push",
        received_at=now,
        team=team,
        repo=f"team-{team}/{name}",
        image=f"{host}/team-{team}/{name}",
        tag=tag,
        digest=digest,
        payload={
            "type": "PUSH_ARTIFACT",
            "occur_at": occur_at or int(now.timestamp()),
            "operator": f"robot$team-{team}+ci",
        },
    )


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_remote(tmp_path: Path, name: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A bare repo (the remote) with one commit on `main` holding `files`; returns (bare, clone)."""
    bare = tmp_path / f"{name}.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / f"{name}-seed"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    git(work, "checkout", "-q", "-b", "main")
    for rel, text in files.items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "seed")
    git(work, "push", "-q", "origin", "main")
    return bare, work


def show(bare: Path, path: str, ref: str = "main") -> str:
    return git(bare, "show", f"{ref}:{path}")


def make_gitops(
    settings: Settings,
    redis_client: Any,
    configuration: client.Configuration,
    *objects: dict[str, Any],
    rest: Any = None,
) -> Any:
    """A GitOps engine on the emulator with a catalog built from `objects` (no watch thread)."""
    from broker.gitops import GitOps
    from handlers.catalog import Catalog

    catalog = Catalog(settings.registry_aliases)
    for obj in objects:
        if obj["kind"] == "ImageUpdater":
            catalog.upsert_image_updater(obj)
        else:
            catalog.upsert_application(obj)
    return GitOps(settings, redis_client, configuration=configuration, catalog=catalog, rest=rest)


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig for the emulator, as a worker process reads it (BROKER_KUBECONFIG)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server.rstrip("/")}}],
        "users": [{"name": "broker", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "broker"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def seed_all(emu: ArgoEmulator, *objects: dict[str, Any]) -> None:
    for obj in objects:
        resource = UPDATERS if obj["kind"] == "ImageUpdater" else APPS
        emu.seed(resource, obj["metadata"]["name"], obj)


def writes(emu: ArgoEmulator, app: str) -> list[Any]:
    """JSON Patches that changed the Application's image (not sync requests)."""
    return [
        r.data
        for r in emu._requests
        if r.method == "PATCH"
        and r.name == app
        and isinstance(r.data, list)
        and any("/helm" in op.get("path", "") or "/kustomize" in op.get("path", "") for op in r.data)
    ]


def helm_params(emu: ArgoEmulator, app: str, source: int | None = None) -> dict[str, str]:
    spec = emu.raw(APPS, app)["spec"]
    src = spec["sources"][source] if source is not None else spec["source"]
    return {p["name"]: p["value"] for p in (src.get("helm") or {}).get("parameters") or []}


# --- the worker around an engine -----------------------------------------------------------------------


def worker_for(gitops: Any) -> tuple[WorkerContext, list[Notice]]:
    """The worker's context around `gitops`; the notices it sends land in the returned list."""
    ctx, sent = make_context(gitops.settings, gitops.process)
    ctx.gitops = gitops
    return ctx, sent


def persist(ctx: WorkerContext, event: Event) -> None:
    """What intake does: the record and its job in one MULTI."""
    pipe = ctx.redis.pipeline(transaction=True)
    enqueue_event_job(ctx.store.queue, pipe, event.id, ctx.store.retry)
    write_event(pipe, event, ttl_s=ctx.store.retention_s)
    pipe.execute()


def idle(ctx: WorkerContext) -> bool:
    """No job queued and none scheduled (a follow-up chain schedules its next look before it ends)."""
    queue = ctx.store.queue
    return queue.count == 0 and ScheduledJobRegistry(queue=queue).count == 0


def work_once(ctx: WorkerContext, *, with_scheduler: bool = True) -> None:
    """One burst round: the jobs queued now (plus, with the scheduler, those due now)."""
    install(ctx)
    try:
        run_worker(ctx.redis, [ctx.settings.queue_name], with_scheduler=with_scheduler)
    finally:
        install(None)


def work_off(ctx: WorkerContext, timeout_s: float = 15.0) -> None:
    """Burst rounds with the scheduler until nothing is queued or scheduled."""
    install(ctx)
    try:
        work_until(
            ctx.redis,
            [ctx.settings.queue_name],
            lambda: idle(ctx),
            timeout_s,
            pause_s=0.01,
            message="jobs still queued or scheduled after the timeout",
        )
    finally:
        install(None)


async def run_event(ctx: WorkerContext, event: Event) -> Event:
    """Queue `event` as intake does and run the worker until it and its follow-up jobs are done (in a
    thread: the emulator and the fake controller serve from this loop); returns the stored record."""
    await asyncio.to_thread(persist, ctx, event)
    await asyncio.to_thread(work_off, ctx)
    record = ctx.store.get(event.id)
    assert record is not None
    return record

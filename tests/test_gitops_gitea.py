"""Gitea push -> refresh/sync end to end, Kubernetes-native and through a fake argocd-server (REST,
bearer token): matching by normalised URL and targetRevision, manifest-generate-paths, deletions,
operations in flight, and the commit side of the deployment record."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from kubernetes import client
from pydantic import SecretStr

from broker.deployments import DeploymentStore
from broker.errors import TransientError
from broker.executors.sync_rest import ArgoRest
from broker.settings import Settings
from tests.argocd_emulator import APPS, ArgoEmulator, FakeController, argocd_rest_app
from tests.gitops_fixtures import classic_app, make_gitops, run_event, seed_all, worker_for
from tests.test_plan_gitea import SHA, push

pytest_plugins = ["tests.gitops_plugin"]

TOKEN = "proj-team-demo-ci-token"


def tracked(name: str, revision: str, *, auto: bool = False, paths: str | None = None) -> dict[str, Any]:
    app = classic_app(
        "demo", name, repo_url="https://gitea.example.com/team-demo/hello.git", path="chart", auto_sync=auto
    )
    app["spec"]["source"]["targetRevision"] = revision
    if paths is not None:
        app["metadata"]["annotations"]["argocd.argoproj.io/manifest-generate-paths"] = paths
    return app


async def test_push_syncs_manual_apps_refreshes_auto_apps_and_records_the_commit(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    apps = [tracked("manual", "main"), tracked("auto", "HEAD", auto=True), tracked("other", "develop")]
    seed_all(emu, *apps)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, *apps)
    ctx, sent = worker_for(gitops)
    event = push(files=["chart/values.yaml"])
    async with FakeController(emu) as controller:
        outcome = await run_event(ctx, event)
    assert outcome.status == "done"
    by_app = {name: op for name, op in controller.operations}
    assert by_app["team-demo-manual"]["sync"]["revision"] == SHA
    assert by_app["team-demo-auto"]["initiatedBy"] == {"automated": True}  # refreshed; Argo CD synced itself
    assert "team-demo-other" not in by_app
    decisions = {(a.kind, a.target): a.decision for a in outcome.actions}
    assert decisions[("match", "team-demo-other")] == "targetRevision develop does not follow branch main"
    assert decisions[("sync", "team-demo-manual")].startswith("auto-sync is off")
    assert decisions[("refresh", "team-demo-auto")].startswith("auto-sync is on")
    assert {a.target for a in outcome.actions if a.kind == "follow"} == {"team-demo-manual", "team-demo-auto"}
    deployment = DeploymentStore(sync_redis, ttl_s=60).get(outcome.deployment_id or "")
    assert deployment is not None and deployment.commit == SHA and deployment.pusher == "alice"
    assert deployment.commit_message == "fix: the thing" and deployment.status == "succeeded"
    assert set(deployment.apps) == {"team-demo-manual", "team-demo-auto"}
    kinds = [n.kind for n in sent]
    assert kinds.count("sync.started") == 2 and kinds.count("deployment.succeeded") == 2
    assert "team-demo-manual: sync requested; following" in (outcome.reason or "")
    assert "team-demo-auto: refresh requested; following" in (outcome.reason or "")


async def test_manifest_generate_paths_and_deletions(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    apps = [tracked("docs", "main", paths="/docs"), tracked("chart", "main", paths=".")]
    seed_all(emu, *apps)
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0})
    gitops = make_gitops(settings, sync_redis, kube_config, *apps)
    outcome = await asyncio.to_thread(gitops.process, push(files=["chart/templates/deployment.yaml"]))
    assert "operation" in emu.raw(APPS, "team-demo-chart") and "operation" not in emu.raw(
        APPS, "team-demo-docs"
    )
    skipped = next(a for a in outcome.actions if a.target == "team-demo-docs")
    assert skipped.decision == "no changed file under manifest-generate-paths /docs"
    deleted = await asyncio.to_thread(gitops.process, push("refs/tags/1.4.2", after="0" * 40))
    assert deleted.status == "ignored" and "deletions never deploy" in deleted.reason


async def test_rest_mode_syncs_through_argocd_server_with_the_bearer_token(
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
    aiohttp_server: Any,
) -> None:
    apps = [tracked("manual", "main"), tracked("auto", "HEAD", auto=True)]
    seed_all(emu, *apps)
    calls: list[tuple[str, str, Any]] = []
    server = await aiohttp_server(argocd_rest_app(emu, TOKEN, calls))
    settings = gitops_settings.model_copy(
        update={"argocd_url": str(server.make_url("")), "argocd_token": SecretStr(TOKEN)}
    )
    gitops = make_gitops(settings, sync_redis, kube_config, *apps)
    assert isinstance(gitops.engine.rest, ArgoRest)
    ctx, _ = worker_for(gitops)
    async with FakeController(emu):
        outcome = await run_event(ctx, push())
    syncs = [c for c in calls if c[0] == "sync"]
    assert [(name, body["revision"]) for _, name, body in syncs] == [("team-demo-manual", SHA)]
    assert ("get", "team-demo-auto", "normal") in calls  # the refresh went through the API too
    assert all(a.detail["via"] == "rest" for a in outcome.actions if a.kind in ("sync", "refresh"))
    assert not [
        r
        for r in emu._requests
        if r.method == "PATCH" and r.name == "team-demo-manual" and isinstance(r.data, list)
    ]
    assert {a.result for a in outcome.actions if a.kind == "follow"} == {"sync Succeeded, health Healthy"}
    assert ("get", "team-demo-manual", None) in calls  # the follow-up looked through the API as well


async def test_operation_in_flight_defers_a_manual_sync(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    apps = [tracked("manual", "main"), tracked("auto", "HEAD", auto=True)]
    seed_all(emu, *apps)
    await emu.change(
        APPS,
        "team-demo-manual",
        {"status": {"operationState": {"phase": "Running", "startedAt": "2026-01-01T00:00:00Z"}}},
    )
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0})
    gitops = make_gitops(settings, sync_redis, kube_config, *apps)
    with pytest.raises(TransientError, match="team-demo-manual: operation in flight"):
        await asyncio.to_thread(gitops.process, push())
    await emu.change(APPS, "team-demo-manual", {"status": {"operationState": {"phase": "Succeeded"}}})
    retried = await asyncio.to_thread(gitops.process, push())
    assert "operation" in emu.raw(APPS, "team-demo-manual")
    assert any(a.kind == "refresh" and a.target == "team-demo-auto" for a in retried.actions)

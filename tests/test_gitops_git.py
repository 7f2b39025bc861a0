"""`git` write-back end to end: APL (ImageUpdater CR, two-source Application, `helmvalues:` target
`env/teams/<t>/workloadValues/<n>.managed.yaml` in the values repo, auto-sync -> refresh, Knative
health) and classic Otomi annotations (`.argocd-source-<app>.yaml`, explicit sync), on real bare
repositories, with credentials read from the named Secret for http(s) remotes only."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client

from broker.errors import PermanentError, TransientError
from broker.settings import Settings
from tests.argocd_emulator import SECRETS, ArgoEmulator, FakeController
from tests.gitops_fixtures import (
    apl_app,
    apl_updater,
    classic_app,
    git,
    harbor_event,
    make_gitops,
    make_remote,
    run_event,
    seed_all,
    show,
    worker_for,
)

pytest_plugins = ["tests.gitops_plugin"]

MANAGED = "env/teams/demo/workloadValues/hello.managed.yaml"
KNATIVE = {
    "group": "serving.knative.dev",
    "kind": "Service",
    "name": "hello",
    "namespace": "team-demo",
    "health": {"status": "Progressing", "message": "Revision hello-00002 is not ready"},
}


def apl_objects(values: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return apl_app("demo", "hello", values_repo=values), apl_updater(
        "demo", [("hello", "semver", "1.12")], values_repo=values
    )


async def test_apl_push_commits_managed_values_refreshes_and_waits_for_knative(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
) -> None:
    bare, _ = make_remote(
        tmp_path, "values", {"env/teams/demo/workloadValues/hello.yaml": "image:\n  repository: x\n"}
    )
    app, updater = apl_objects(str(bare))
    seed_all(emu, app, updater)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app, updater)
    event = harbor_event("demo", "hello", "1.12.4")
    steps: Any = (("Progressing", "", [KNATIVE]), ("Healthy", "", []))
    ctx, _ = worker_for(gitops)
    async with FakeController(emu, health_steps=steps, run_s=0.05) as controller:
        outcome = await run_event(ctx, event)
    assert yaml.safe_load(show(bare, MANAGED)) == {
        "image": {"repository": "harbor.example.com/team-demo/hello", "tag": "1.12.4"}
    }
    message = git(bare, "log", "-1", "--format=%B", "main")
    assert message.startswith("build: automatic update of team-demo-hello [ci skip]")
    assert event.id in message and "[broker write-back]" in message
    assert [a.kind for a in outcome.actions] == ["write-back", "refresh", "follow"]
    write = outcome.actions[0]
    assert (
        write.decision == "git write-back: team-demo-hello=1.12.4" and write.detail["target"] == "helmvalues"
    )
    assert write.detail["where"].endswith(f"@main:{MANAGED}")
    assert (
        outcome.actions[1].decision
        == "auto-sync is on: a refresh makes Argo CD see the new commit now and sync it"
    )
    assert outcome.actions[2].result == "sync Succeeded, health Healthy"
    assert controller.operations[0][1]["initiatedBy"] == {"automated": True}  # Argo CD's own auto-sync did it
    # The app's spec was not touched: APL's Application is rendered by the platform, values live in git.
    assert (
        "parameters"
        not in emu.raw("argoproj.io/v1alpha1/applications", "team-demo-hello")["spec"]["sources"][0]["helm"]
    )
    again = await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.12.4"))
    assert "already at 1.12.4" in again.reason and git(bare, "rev-list", "--count", "main").strip() == "2"
    rejected = await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.13.0"))
    assert rejected.reason == "tag 1.13.0 rejected by constraint 1.12"


async def test_knative_service_never_ready_is_reported(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
) -> None:
    bare, _ = make_remote(tmp_path, "values", {"README.md": "values\n"})
    app, updater = apl_objects(str(bare))
    seed_all(emu, app, updater)
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0.6})
    gitops = make_gitops(settings, sync_redis, kube_config, app, updater)
    stuck: Any = tuple(("Progressing", "Revision hello-00002 is not ready", [KNATIVE]) for _ in range(40))
    ctx, sent = worker_for(gitops)
    async with FakeController(emu, health_steps=stuck, run_s=0.05):
        outcome = await run_event(ctx, harbor_event("demo", "hello", "1.12.5"))
    follow = outcome.actions[-1]
    assert follow.decision == "stopped following: timeout"
    assert "Knative Service hello not Ready yet (Revision hello-00002 is not ready)" in (follow.result or "")
    assert follow.detail["health"] == "Progressing"
    assert [n.kind for n in sent][-1] == "deployment.failed"


async def test_classic_otomi_git_write_back_to_argocd_source_file(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
) -> None:
    bare, _ = make_remote(tmp_path, "charts", {"k8s-deployment/Chart.yaml": "name: k8s-deployment\n"})
    app = classic_app(
        "demo", "hello", repo_url=str(bare), path="k8s-deployment"
    )  # git:secret:argocd/team-demo-gitea-repo-creds
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    ctx, _ = worker_for(gitops)
    async with FakeController(emu) as controller:
        outcome = await run_event(ctx, harbor_event("demo", "hello", "1.4.2"))
    override = yaml.safe_load(show(bare, "k8s-deployment/.argocd-source-team-demo-hello.yaml"))
    assert override == {
        "helm": {
            "parameters": [
                {
                    "name": "image.repository",
                    "value": "harbor.example.com/team-demo/hello",
                    "forceString": True,
                },
                {"name": "image.tag", "value": "1.4.2", "forceString": True},
            ]
        }
    }
    assert [a.kind for a in outcome.actions] == ["write-back", "sync", "follow"]
    assert controller.operations[0][1]["initiatedBy"]["username"] == "webhook-broker"
    assert not [
        r for r in emu._requests if r.resource and r.resource.plural == "secrets"
    ]  # local remote: no creds


async def test_credentials_come_from_the_named_secret_for_http_remotes(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = classic_app("demo", "hello", repo_url="http://127.0.0.1:9/otomi/charts.git")
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    with pytest.raises(PermanentError, match="Secret argocd/team-demo-gitea-repo-creds not found"):
        await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.4.2"))
    data = {
        "username": base64.b64encode(b"otomi-admin").decode(),
        "password": base64.b64encode(b"pw").decode(),
    }
    emu.seed(SECRETS, "team-demo-gitea-repo-creds", {"apiVersion": "v1", "kind": "Secret", "data": data})
    with pytest.raises(TransientError, match="git fetch"):  # nothing listens there: retried later
        await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.4.3"))
    reads = [r for r in emu._requests if r.resource and r.resource.plural == "secrets"]
    assert [r.name for r in reads] == ["team-demo-gitea-repo-creds", "team-demo-gitea-repo-creds"]

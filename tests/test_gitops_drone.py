"""Drone -> Harbor -> sync linking: one deployment record per rollout, from the Gitea commit through the
Drone build and the Harbor image (tag = commit sha prefix, or the tag build's tag) to the write-back,
the sync and health; and the notices carry what actually deployed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import redis
from kubernetes import client
from ulid import ULID

from broker.deployments import DeploymentStore
from broker.settings import Settings
from handlers.models import BuildInfo, Event
from tests.argocd_emulator import ArgoEmulator, FakeController
from tests.gitops_fixtures import IU, classic_app, harbor_event, make_gitops, run_event, seed_all, worker_for
from tests.test_plan_gitea import SHA, push

pytest_plugins = ["tests.gitops_plugin"]

APP = "team-demo-hello"


def drone(status: str, *, commit: str = SHA, ref: str = "refs/heads/main", number: int = 42) -> Event:
    return Event(
        id=str(ULID()),
        source="drone",
        type="build",
        received_at=datetime.now(UTC),
        team="demo",
        repo="team-demo/hello",
        ref=ref,
        commit=commit,
        build=BuildInfo(
            id=number,
            number=number,
            status=status,
            link=f"https://drone.example.com/team-demo/hello/{number}",
        ),
        payload={
            "build": {"after": commit, "ref": ref, "message": "feat: tagged release\n", "status": status}
        },
    )


def sha_tracking_app() -> dict:
    app = classic_app("demo", "hello", strategy="newest-build", write_back="argocd")
    app["metadata"]["annotations"][f"{IU}/team-demo-hello.allow-tags"] = "regexp:^[0-9a-f]{7}$"
    app["metadata"]["annotations"][f"{IU}/image-list"] = "team-demo-hello=harbor.example.com/team-demo/hello"
    return app


async def test_commit_build_image_sync_health_in_one_record(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = sha_tracking_app()
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    store = DeploymentStore(sync_redis, ttl_s=60)

    pushed = await asyncio.to_thread(gitops.process, push(repo="team-demo/hello-src"))
    assert pushed.status == "ignored" and pushed.deployment_id  # no Application follows the code repo itself
    built = await asyncio.to_thread(gitops.process, drone("success"))
    assert built.deployment_id == pushed.deployment_id
    [notice] = built.notices
    assert notice.kind == "build.succeeded" and notice.data["commit_message"] == "fix: the thing"
    assert (
        notice.data["build_link"] == "https://drone.example.com/team-demo/hello/42"
        and notice.data["pusher"] == "alice"
    )

    image = harbor_event("demo", "hello", SHA[:7])
    ctx, sent = worker_for(gitops)
    async with FakeController(emu):
        deployed = await run_event(ctx, image)
    assert deployed.deployment_id == pushed.deployment_id
    record = store.get(deployed.deployment_id or "")
    assert record is not None
    assert (record.commit, record.commit_message, record.pusher) == (SHA, "fix: the thing", "alice")
    assert record.build is not None and (record.build.number, record.build.status) == (42, "success")
    assert (record.image, record.tag) == ("harbor.example.com/team-demo/hello", SHA[:7])
    assert record.apps[APP].status == "succeeded" and record.status == "succeeded"
    assert len(record.events) == 3 and image.id in record.events
    final = next(n for n in sent if n.kind == "deployment.succeeded")
    assert final.deployment_id == record.id
    for key, value in {
        "commit": SHA,
        "commit_message": "fix: the thing",
        "build_link": "https://drone.example.com/team-demo/hello/42",
        "pusher": "alice",
    }.items():
        assert final.data[key] == value
    assert final.data["image"].startswith(f"harbor.example.com/team-demo/hello:{SHA[:7]}@sha256:")
    assert final.data["argocd"]["phase"] == "Succeeded"


async def test_tag_build_links_the_image_pushed_under_that_tag(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = classic_app("demo", "hello", write_back="argocd")
    seed_all(emu, app)
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0})
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    other = "1" * 40
    built = await asyncio.to_thread(
        gitops.process, drone("success", commit=other, ref="refs/tags/1.4.2", number=43)
    )
    deployed = await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.4.2"))
    assert deployed.deployment_id == built.deployment_id
    record = DeploymentStore(sync_redis, ttl_s=60).get(built.deployment_id or "")
    assert (
        record is not None
        and record.commit == other
        and record.build is not None
        and record.build.number == 43
    )
    assert record.commit_message == "feat: tagged release" and record.apps[APP].status == "syncing"


async def test_failed_build_is_recorded_and_told(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    gitops = make_gitops(gitops_settings, sync_redis, kube_config)
    outcome = await asyncio.to_thread(gitops.process, drone("failure"))
    assert outcome.status == "done" and outcome.notices[0].kind == "build.failed"
    record = DeploymentStore(sync_redis, ttl_s=60).get(outcome.deployment_id or "")
    assert record is not None and record.status == "build_failed" and record.commit == SHA
    running = await asyncio.to_thread(gitops.process, drone("running"))
    assert running.status == "ignored" and "not final" in running.reason

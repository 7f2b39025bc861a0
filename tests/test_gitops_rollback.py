"""Rollback awareness end to end, on kmock's Argo CD emulator over real HTTP and real Redis: a workload
found carrying an older value than the broker applied (someone rolled it back: `argocd app set -p`, a
revert in the values repo) is pinned, later pushes leave it there and say why in the event log, and the
pin ends when an operator removes it or the workload is rolled forward again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
import yaml
from kubernetes import client

from broker.pins import PinStore, aremove
from broker.settings import Settings
from handlers.models import Event
from tests.argocd_emulator import APPS, ArgoEmulator
from tests.gitops_fixtures import (
    apl_app,
    apl_updater,
    classic_app,
    git,
    harbor_event,
    helm_params,
    make_gitops,
    make_remote,
    seed_all,
    show,
)

pytest_plugins = ["tests.gitops_plugin"]

APP = "team-demo-hello"
ALIAS = "team-demo-hello"
IMAGE = "harbor.example.com/team-demo/hello"


def argocd_app(**kw: Any) -> dict[str, Any]:
    kw.setdefault("params", [{"name": "image.tag", "value": "1.4.1", "forceString": True}])
    return classic_app("demo", "hello", write_back="argocd", **kw)


async def set_by_hand(emu: ArgoEmulator, tag: str) -> None:
    """What `argocd app set -p image.tag=<tag>` does: the Application's parameter, changed outside."""
    params = [
        {"name": "image.tag", "value": tag, "forceString": True},
        {"name": "image.repository", "value": IMAGE, "forceString": True},
    ]
    await emu.change(APPS, APP, {"spec": {"source": {"helm": {"parameters": params}}}, "operation": None})


class Pushes:
    """Harbor pushes for `app`, seeded on the emulator, processed one after another by the engine (no
    controller: each sync request is cleared as if Argo CD had run it)."""

    def __init__(
        self,
        emu: ArgoEmulator,
        kube_config: client.Configuration,
        settings: Settings,
        sync_redis: redis.Redis,
        app: dict[str, Any],
    ) -> None:
        seed_all(emu, app)
        self.emu, self.gitops = emu, make_gitops(settings, sync_redis, kube_config, app)

    async def push(self, tag: str) -> tuple[Event, Any]:
        event = harbor_event("demo", "hello", tag)
        outcome = await asyncio.to_thread(self.gitops.process, event)
        await self.emu.change(APPS, APP, {"operation": None})
        return event, outcome


def decisions(outcome: Any, kind: str) -> list[str]:
    return [action.decision for action in outcome.actions if action.kind == kind]


async def test_a_rollback_made_by_hand_pins_the_image_until_an_operator_unpins_it(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    pushes = Pushes(emu, kube_config, gitops_settings, sync_redis, argocd_app())
    await pushes.push("1.4.3")
    assert helm_params(emu, APP)["image.tag"] == "1.4.3"

    await set_by_hand(emu, "1.4.1")
    event, outcome = await pushes.push("1.4.4")
    assert helm_params(emu, APP)["image.tag"] == "1.4.1", "the rollback stands"
    assert decisions(outcome, "pin") == [
        "pinned: rolled back from 1.4.3 to 1.4.1; the broker leaves it there until it is unpinned"
    ]
    [refusal] = decisions(outcome, "write-back")
    assert "rolled back from 1.4.3 to 1.4.1" in refusal and f"broker unpin {APP}/{ALIAS}" in refusal
    pin = PinStore(sync_redis).get(APP, ALIAS)
    assert pin is not None
    [notice] = [n for n in outcome.notices if n.kind == "update.pinned"]
    assert (notice.team, notice.app, notice.data["found"]) == ("demo", APP, "1.4.1")
    assert notice.summary == (
        f"{APP}: {IMAGE} stays at 1.4.1 (rolled back from 1.4.3 to 1.4.1); "
        f"`broker unpin {APP}/{ALIAS}` resumes"
    )
    assert (pin.applied, pin.found, pin.event_id) == ("1.4.3", "1.4.1", event.id)
    assert (pin.team, pin.image, pin.strategy) == ("demo", IMAGE, "semver")

    _, later = await pushes.push("1.4.5")
    assert helm_params(emu, APP)["image.tag"] == "1.4.1"
    assert decisions(later, "pin") == [], "the pin is reported once, where it was set"
    assert [n.kind for n in later.notices] == []
    assert decisions(later, "write-back") == [pin.refusal()]

    async with aredis.Redis.from_url(str(gitops_settings.redis_url)) as client_:
        assert await aremove(client_, APP, ALIAS) == pin
    _, resumed = await pushes.push("1.4.6")
    assert helm_params(emu, APP)["image.tag"] == "1.4.6", "updates resume: the same rollback pins no more"
    assert PinStore(sync_redis).get(APP, ALIAS) is None
    assert decisions(resumed, "pin") == []

    await set_by_hand(emu, "1.4.2")
    _, again = await pushes.push("1.4.7")
    assert helm_params(emu, APP)["image.tag"] == "1.4.2", "a new rollback pins again"
    assert decisions(again, "pin") == [
        "pinned: rolled back from 1.4.6 to 1.4.2; the broker leaves it there until it is unpinned"
    ]


async def test_a_pin_ends_by_itself_once_the_workload_is_rolled_forward(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    pushes = Pushes(emu, kube_config, gitops_settings, sync_redis, argocd_app())
    await pushes.push("1.4.3")
    await set_by_hand(emu, "1.4.1")
    await pushes.push("1.4.4")
    assert PinStore(sync_redis).get(APP, ALIAS) is not None

    await set_by_hand(emu, "1.4.3")
    _, outcome = await pushes.push("1.4.5")
    assert decisions(outcome, "pin") == [
        "unpinned: it carries 1.4.3 again (rolled back from 1.4.3 to 1.4.1 before)"
    ]
    assert helm_params(emu, APP)["image.tag"] == "1.4.5"
    assert PinStore(sync_redis).get(APP, ALIAS) is None


async def test_strategies_without_an_order_pin_on_any_value_set_outside(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app(strategy="newest-build", tag="main", params=[])
    pushes = Pushes(emu, kube_config, gitops_settings, sync_redis, app)
    await pushes.push("build-9")
    await set_by_hand(emu, "build-7")
    _, outcome = await pushes.push("build-10")
    assert helm_params(emu, APP)["image.tag"] == "build-7"
    assert decisions(outcome, "pin") == [
        "pinned: changed outside the broker from build-9 to build-7; the broker leaves it there until it is "
        "unpinned"
    ]


async def test_the_broker_never_pins_what_it_wrote_itself(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app(strategy="newest-build", tag="main", params=[])
    pushes = Pushes(emu, kube_config, gitops_settings, sync_redis, app)
    for build in ("build-1", "build-2", "build-3"):
        _, outcome = await pushes.push(build)
        assert decisions(outcome, "pin") == []
        assert helm_params(emu, APP)["image.tag"] == build
    assert sync_redis.hlen("broker:pins") == 0


async def test_a_revert_in_the_values_repo_pins_the_git_write_back(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
) -> None:
    managed = "env/teams/demo/workloadValues/hello.managed.yaml"
    bare, work = make_remote(
        tmp_path,
        "values",
        {managed: "image:\n  repository: harbor.example.com/team-demo/hello\n  tag: 1.12.3\n"},
    )
    app = apl_app("demo", "hello", values_repo=str(bare))
    updater = apl_updater("demo", [("hello", "semver", "1.12")], values_repo=str(bare))
    seed_all(emu, app, updater)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app, updater)

    def tag() -> str:
        return str(yaml.safe_load(show(bare, managed))["image"]["tag"])

    await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.12.4"))
    assert tag() == "1.12.4"
    git(work, "pull", "-q", "origin", "main")
    git(work, "-c", "user.name=ops", "-c", "user.email=ops@example.com", "revert", "--no-edit", "HEAD")
    git(work, "push", "-q", "origin", "main")
    assert tag() == "1.12.3"

    outcome = await asyncio.to_thread(gitops.process, harbor_event("demo", "hello", "1.12.5"))
    assert tag() == "1.12.3", "the revert stands"
    assert decisions(outcome, "pin") == [
        "pinned: rolled back from 1.12.4 to 1.12.3; the broker leaves it there until it is unpinned"
    ]
    assert git(bare, "rev-list", "--count", "main").strip() == "3", "no commit on top of the revert"


def history_source(tag: str) -> dict[str, Any]:
    """The source an Argo CD history entry keeps: the Application's source as it was deployed then."""
    source = argocd_app()["spec"]["source"]
    params = [{"name": "image.tag", "value": tag, "forceString": True}]
    return {**source, "helm": {**source["helm"], "parameters": params}}


async def test_an_argo_cd_rollback_pins_the_image_until_someone_syncs_the_spec_again(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    pushes = Pushes(emu, kube_config, gitops_settings, sync_redis, argocd_app())
    await pushes.push("1.4.3")
    # `argocd app rollback`: a sync of an older history entry, its source carried in the operation; the
    # Application's spec still says 1.4.3.
    rollback = {
        "sync": {"revision": "4f1c0de", "source": history_source("1.4.1")},
        "initiatedBy": {"username": "alice"},
    }
    await emu.change(APPS, APP, {"status": {"operationState": {"operation": rollback, "phase": "Succeeded"}}})
    _, outcome = await pushes.push("1.4.4")
    assert helm_params(emu, APP)["image.tag"] == "1.4.3", "the spec is not moved on"
    assert "operation" not in emu.raw(APPS, APP), "and no sync undoes the rollback"
    assert decisions(outcome, "pin") == [
        "pinned: rolled back from 1.4.3 to 1.4.1 (an Argo CD rollback by alice); the broker leaves it there "
        "until it is unpinned"
    ]
    _, still = await pushes.push("1.4.5")
    assert helm_params(emu, APP)["image.tag"] == "1.4.3" and decisions(still, "pin") == []

    # Someone syncs the Application to its spec again: the rollback is over.
    # (A merge patch keeps what it does not name: the rollback's source is removed explicitly, as Argo CD
    # replaces the whole operation state.)
    resync = {"sync": {"revision": "HEAD", "source": None}, "initiatedBy": {"username": "bob"}}
    await emu.change(APPS, APP, {"status": {"operationState": {"operation": resync, "phase": "Succeeded"}}})
    _, resumed = await pushes.push("1.4.6")
    assert decisions(resumed, "pin") == [
        "unpinned: it carries 1.4.3 again (rolled back from 1.4.3 to 1.4.1 (an Argo CD rollback by alice) "
        "before)"
    ]
    assert helm_params(emu, APP)["image.tag"] == "1.4.6"

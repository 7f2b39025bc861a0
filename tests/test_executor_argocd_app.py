"""`argocd` write-back against kmock's Kubernetes emulator over real HTTP: the JSON Patch it sends,
the resourceVersion guard, and retries when another writer wins the race."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client

from broker.errors import TransientError
from broker.executors.argocd_app import write_back_argocd
from broker.kube import Kube
from handlers.app_edits import ImageWrite
from handlers.catalog import Catalog
from tests.argocd_emulator import APPS, ArgoEmulator
from tests.gitops_fixtures import apl_app, apl_updater, classic_app

pytest_plugins = ["tests.gitops_plugin"]

VALUES = "https://gitea.example.com/otomi/values.git"


def writes_for(
    app: dict[str, Any], updater: dict[str, Any] | None = None, tag: str = "1.4.3"
) -> list[ImageWrite]:
    catalog = Catalog()
    if updater:
        catalog.upsert_image_updater(updater)
    catalog.upsert_application(app)
    image = catalog.tracked(app["metadata"]["name"])[0]
    return [ImageWrite(image, tag, None, tag)]


def patches(emu: ArgoEmulator) -> list[Any]:
    return [r.data for r in emu._requests if r.method == "PATCH"]


async def test_patch_sets_helm_parameters_with_a_resource_version_test(
    emu: ArgoEmulator, kube_config: client.Configuration
) -> None:
    app = classic_app(
        "demo",
        "hello",
        write_back="argocd",
        params=[{"name": "image.tag", "value": "1.4.1", "forceString": True}],
    )
    emu.seed(APPS, "team-demo-hello", app)
    kube = Kube(client.ApiClient(kube_config), "argocd")
    writes = writes_for(app)
    result = await asyncio.to_thread(
        write_back_argocd, kube, "team-demo-hello", lambda live: writes, retries=3
    )
    assert result.changed and result.conflicts == 0
    [sent] = patches(emu)
    assert sent[0]["op"] == "test" and sent[0]["path"] == "/metadata/resourceVersion"
    params = emu.raw(APPS, "team-demo-hello")["spec"]["source"]["helm"]["parameters"]
    assert {p["name"]: (p["value"], p["forceString"]) for p in params} == {
        "image.tag": ("1.4.3", True),
        "image.repository": ("harbor.example.com/team-demo/hello", True),
    }
    again = await asyncio.to_thread(
        write_back_argocd, kube, "team-demo-hello", lambda live: writes, retries=3
    )
    assert not again.changed and len(patches(emu)) == 1  # nothing left to write: no second patch


async def test_multi_source_application_gets_its_chart_source_edited(
    emu: ArgoEmulator, kube_config: client.Configuration
) -> None:
    app = apl_app("demo", "hello", values_repo=VALUES)
    emu.seed(APPS, "team-demo-hello", app)
    writes = writes_for(app, apl_updater("demo", [("hello", "semver", "1.x")], values_repo=VALUES))
    kube = Kube(client.ApiClient(kube_config), "argocd")
    await asyncio.to_thread(write_back_argocd, kube, "team-demo-hello", lambda live: writes, retries=3)
    sources = emu.raw(APPS, "team-demo-hello")["spec"]["sources"]
    assert sources[0]["helm"]["parameters"][1] == {"name": "image.tag", "value": "1.4.3", "forceString": True}
    assert sources[0]["helm"]["valueFiles"][0].startswith("$values/")  # untouched
    assert sources[1] == {"repoURL": VALUES, "targetRevision": "main", "ref": "values"}


async def test_lost_races_are_retried_on_fresh_state_then_given_up(
    emu: ArgoEmulator, kube_config: client.Configuration
) -> None:
    app = classic_app("demo", "hello", write_back="argocd")
    emu.seed(APPS, "team-demo-hello", app)
    kube = Kube(client.ApiClient(kube_config), "argocd")
    writes = writes_for(app)
    seen: list[str] = []

    def decide(live: dict[str, Any]) -> list[ImageWrite]:
        seen.append(live["metadata"]["resourceVersion"])
        return writes

    emu.forced_conflicts = 2
    result = await asyncio.to_thread(
        write_back_argocd, kube, "team-demo-hello", decide, retries=3, backoff_s=0.001
    )
    assert result.changed and result.conflicts == 2
    assert len(set(seen)) == 3  # every attempt decided on a newer resourceVersion
    assert emu.raw(APPS, "team-demo-hello")["metadata"]["annotations"][
        "racing-writer"
    ]  # the rival's change survived

    emu.forced_conflicts = 10
    with pytest.raises(TransientError, match="changed under every one of 3"):
        await asyncio.to_thread(
            write_back_argocd,
            kube,
            "team-demo-hello",
            lambda live: writes_for(app, tag="1.4.9"),
            retries=2,
            backoff_s=0.001,
        )


async def test_stale_resource_version_test_is_a_conflict_not_a_clobber(
    emu: ArgoEmulator, kube_config: client.Configuration
) -> None:
    app = classic_app("demo", "hello", write_back="argocd")
    emu.seed(APPS, "team-demo-hello", app)
    kube = Kube(client.ApiClient(kube_config), "argocd")
    writes = writes_for(app)
    changed_once = False

    def decide(live: dict[str, Any]) -> list[ImageWrite]:
        nonlocal changed_once
        if not changed_once:  # someone edits the Application between our read and our patch
            changed_once = True
            future = asyncio.run_coroutine_threadsafe(
                emu.change(APPS, "team-demo-hello", {"spec": {"project": "moved"}}), loop
            )
            future.result()
        return writes

    loop = asyncio.get_running_loop()
    result = await asyncio.to_thread(
        write_back_argocd, kube, "team-demo-hello", decide, retries=3, backoff_s=0.001
    )
    assert result.changed and result.conflicts == 1
    final = emu.raw(APPS, "team-demo-hello")
    assert final["spec"]["project"] == "moved" and final["spec"]["source"]["helm"]["parameters"]

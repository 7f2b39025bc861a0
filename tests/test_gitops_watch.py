"""The catalog watch over real HTTP: initial listing, ADDED/MODIFIED/DELETED of Applications and
ImageUpdaters (a deleted Application's rollback pins go with it), a re-list when the watch expires (410
Gone), and a prompt stop."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import redis
from kubernetes import client

from broker.gitops import GitOps, build_gitops
from broker.pins import PinStore
from broker.settings import Settings
from tests.argocd_emulator import APPS, ArgoEmulator, eventually
from tests.gitops_fixtures import IU, apl_app, apl_updater, classic_app, harbor_event, write_kubeconfig
from tests.test_pins_api import pin

pytest_plugins = ["tests.gitops_plugin"]

HELLO = "harbor.example.com/team-demo/hello"


async def test_watch_keeps_the_catalog_current_and_relists_on_expiry(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    emu.seed(APPS, "team-demo-hello", classic_app("demo", "hello"))
    gitops = GitOps(gitops_settings, sync_redis, configuration=kube_config)
    assert gitops.watch is not None
    try:
        await eventually(lambda: gitops.watch.ready.is_set())  # type: ignore[union-attr]
        assert [m.app.name for m in gitops.catalog.images_for(HELLO)] == ["team-demo-hello"]
        api = client.CustomObjectsApi(gitops.api_client)

        new = classic_app("demo", "web")
        await asyncio.to_thread(
            api.create_namespaced_custom_object, "argoproj.io", "v1alpha1", "argocd", "applications", new
        )
        await eventually(lambda: gitops.catalog.app("team-demo-web") is not None)

        await emu.change(
            APPS,
            "team-demo-web",
            {"metadata": {"annotations": {f"{IU}/image-list": f"team-demo-web={HELLO}:~2.0"}}},
        )
        await eventually(lambda: len(gitops.catalog.images_for(HELLO)) == 2)

        values = "https://gitea.example.com/otomi/values.git"
        await asyncio.to_thread(
            api.create_namespaced_custom_object,
            "argoproj.io",
            "v1alpha1",
            "argocd",
            "applications",
            apl_app("demo", "api", values_repo=values),
        )
        updater = apl_updater("demo", [("api", "semver", "1.x")], values_repo=values)
        await asyncio.to_thread(
            api.create_namespaced_custom_object, IU, "v1alpha1", "argocd", "imageupdaters", updater
        )
        await eventually(lambda: len(gitops.catalog.images_for("harbor.example.com/team-demo/api")) == 1)

        pins = PinStore(sync_redis)
        pins.add(pin("team-demo-web", "web", "demo"))
        pins.add(pin("team-demo-webhooks", "web", "demo"))  # another app whose name starts alike
        await asyncio.to_thread(
            api.delete_namespaced_custom_object,
            "argoproj.io",
            "v1alpha1",
            "argocd",
            "applications",
            "team-demo-web",
        )
        await eventually(lambda: gitops.catalog.app("team-demo-web") is None)
        await eventually(lambda: pins.get("team-demo-web", "web") is None)  # its pins go with it
        assert pins.get("team-demo-webhooks", "web") is not None

        # An object the watch never told us about appears after the watch expires and we list again.
        emu.seed(APPS, "team-demo-quiet", classic_app("demo", "quiet"))
        relists = gitops.watch.relists  # type: ignore[union-attr]
        await emu.expire_watches(APPS)
        await eventually(lambda: gitops.watch.relists > relists)  # type: ignore[union-attr]
        await eventually(lambda: gitops.catalog.app("team-demo-quiet") is not None)
        assert (
            len(gitops.catalog.images_for("harbor.example.com/team-demo/api")) == 1
        )  # CRs survived the relist
    finally:
        started = time.monotonic()
        await asyncio.to_thread(gitops.close)
        assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.1)
    assert all(not t.is_alive() for t in gitops.watch._threads)


async def test_build_gitops_from_a_kubeconfig_and_without_a_cluster(
    tmp_path: Path, emu: ArgoEmulator, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    emu.seed(APPS, "team-demo-hello", classic_app("demo", "hello"))
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(emu.url))
    gitops = build_gitops(gitops_settings.model_copy(update={"kubeconfig": str(kubeconfig)}), sync_redis)
    assert gitops is not None
    try:
        await eventually(lambda: gitops.catalog.app("team-demo-hello") is not None)
        other = harbor_event("demo", "hello", "1.4.3").model_copy(update={"source": "gitlab"})
        outcome = await asyncio.to_thread(gitops.process, other)
        assert outcome.status == "ignored" and "not handled" in outcome.reason
    finally:
        await asyncio.to_thread(gitops.close)
    if not os.environ.get("KUBECONFIG") and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        assert (
            build_gitops(gitops_settings, sync_redis) is None
        )  # no cluster: the worker records, deploys nothing

"""Sync, refresh and follow-up: Kubernetes-native `.operation` on the emulator (never over an operation in
flight, retried on lost races), Argo CD REST against a fake argocd-server, and following the result
until it settles (incl. a Knative Service that is not Ready yet) or times out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client

from broker.errors import PermanentError, TransientError
from broker.executors.follow import follow
from broker.executors.sync_k8s import SyncRequest, refresh_k8s, sync_k8s
from broker.executors.sync_rest import ArgoRest
from broker.kube import Kube
from tests.argocd_emulator import APPS, ArgoEmulator, FakeController, argocd_rest_app
from tests.gitops_fixtures import classic_app

pytest_plugins = ["tests.gitops_plugin"]

TOKEN = "argocd-project-token"
KNATIVE_PENDING = [
    {
        "group": "serving.knative.dev",
        "kind": "Service",
        "name": "hello",
        "namespace": "team-demo",
        "health": {
            "status": "Progressing",
            "message": 'Configuration "hello" is waiting for a Revision to become ready.',
        },
    }
]


def request(mode: str = "sync", revision: str | None = None) -> SyncRequest:
    return SyncRequest(app="team-demo-hello", mode=mode, revision=revision, reason="test", event_id="EVT1")


@pytest.fixture
def kube(emu: ArgoEmulator, kube_config: client.Configuration) -> Kube:
    emu.seed(APPS, "team-demo-hello", classic_app("demo", "hello"))
    return Kube(client.ApiClient(kube_config), "argocd")


async def test_k8s_sync_sets_the_operation_behind_a_resource_version_test(
    emu: ArgoEmulator, kube: Kube
) -> None:
    result = await asyncio.to_thread(
        sync_k8s, kube, request(revision="742f453b"), retries=3, wait_inflight_s=0
    )
    assert result.requested and result.mode == "sync"
    [patch] = [r.data for r in emu._requests if r.method == "PATCH"]
    assert patch[0]["op"] == "test" and patch[1]["path"] == "/operation"
    operation = emu.raw(APPS, "team-demo-hello")["operation"]
    assert operation["initiatedBy"] == {"username": "webhook-broker", "automated": False}
    assert {"name": "broker-event", "value": "EVT1"} in operation["info"]
    assert operation["sync"]["revision"] == "742f453b" and operation["sync"]["syncStrategy"] == {"hook": {}}


async def test_k8s_sync_never_clobbers_an_operation_in_flight(emu: ArgoEmulator, kube: Kube) -> None:
    await emu.change(
        APPS, "team-demo-hello", {"operation": {"initiatedBy": {"username": "alice"}, "sync": {}}}
    )
    result = await asyncio.to_thread(sync_k8s, kube, request(), retries=3, wait_inflight_s=0.1, poll_s=0.02)
    assert not result.requested and result.in_flight
    assert result.detail == "operation in flight: operation requested by alice not yet started"
    assert emu.raw(APPS, "team-demo-hello")["operation"]["initiatedBy"] == {"username": "alice"}
    assert not [r for r in emu._requests if r.method == "PATCH"]


async def test_k8s_sync_waits_for_a_running_operation_to_finish(emu: ArgoEmulator, kube: Kube) -> None:
    await emu.change(
        APPS, "team-demo-hello", {"status": {"operationState": {"phase": "Running", "startedAt": "x"}}}
    )

    async def finish_soon() -> None:
        await asyncio.sleep(0.15)
        await emu.change(APPS, "team-demo-hello", {"status": {"operationState": {"phase": "Succeeded"}}})

    finisher = asyncio.create_task(finish_soon())
    result = await asyncio.to_thread(sync_k8s, kube, request(), retries=3, wait_inflight_s=3, poll_s=0.02)
    await finisher
    assert result.requested and "operation" in emu.raw(APPS, "team-demo-hello")


async def test_k8s_sync_retries_lost_races_and_gives_up_eventually(emu: ArgoEmulator, kube: Kube) -> None:
    emu.forced_conflicts = 2
    result = await asyncio.to_thread(sync_k8s, kube, request(), retries=3, wait_inflight_s=0, backoff_s=0.001)
    assert result.requested and result.conflicts == 2
    await emu.change(
        APPS, "team-demo-hello", {"operation": None, "status": {"operationState": {"phase": "Succeeded"}}}
    )
    emu.forced_conflicts = 99
    with pytest.raises(TransientError, match="resourceVersion races"):
        await asyncio.to_thread(sync_k8s, kube, request(), retries=2, wait_inflight_s=0, backoff_s=0.001)


async def test_k8s_refresh_annotation(emu: ArgoEmulator, kube: Kube) -> None:
    result = await asyncio.to_thread(refresh_k8s, kube, request("refresh"))
    assert result.requested and result.mode == "refresh"
    annotations = emu.raw(APPS, "team-demo-hello")["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/refresh"] == "normal"


async def test_follow_waits_for_knative_service_to_become_ready(emu: ArgoEmulator, kube: Kube) -> None:
    steps: Any = (
        ("Progressing", "waiting for Knative", KNATIVE_PENDING),
        ("Progressing", "", KNATIVE_PENDING),
        ("Healthy", "", []),
    )
    async with FakeController(emu, health_steps=steps, run_s=0.05):
        result = await asyncio.to_thread(sync_k8s, kube, request(), retries=3, wait_inflight_s=0)
        seen: list[tuple[str | None, tuple[str, ...]]] = []

        def get() -> dict[str, Any]:
            app = kube.get_app("team-demo-hello")
            from broker.executors.follow import not_ready

            seen.append(((app.get("status") or {}).get("health", {}).get("status"), not_ready(app)))
            return app

        followed = await asyncio.to_thread(
            follow, get, event_id="EVT1", since=result.requested_at, timeout_s=5, poll_s=0.01
        )
    assert followed.settled and followed.succeeded and followed.phase == "Succeeded"
    assert any(w and "Knative Service hello not Ready yet" in w[0] for _, w in seen)


async def test_follow_reports_failure_and_timeouts(emu: ArgoEmulator, kube: Kube) -> None:
    async with FakeController(emu, outcome="Failed", health_steps=(("Degraded", "CrashLoopBackOff", []),)):
        result = await asyncio.to_thread(sync_k8s, kube, request(), retries=3, wait_inflight_s=0)
        followed = await asyncio.to_thread(
            follow,
            lambda: kube.get_app("team-demo-hello"),
            event_id="EVT1",
            since=result.requested_at,
            timeout_s=5,
            poll_s=0.01,
        )
    assert followed.settled and followed.phase == "Failed" and not followed.succeeded
    # Nobody runs the next operation: following gives up after the timeout and says what it last saw.
    await asyncio.to_thread(
        sync_k8s,
        kube,
        SyncRequest("team-demo-hello", "sync", None, "again", "EVT2"),
        retries=1,
        wait_inflight_s=0,
    )
    stuck = await asyncio.to_thread(
        follow, lambda: kube.get_app("team-demo-hello"), event_id="EVT2", since=0, timeout_s=0.2, poll_s=0.02
    )
    assert not stuck.settled and "not settled after" in stuck.summary()


async def test_rest_sync_refresh_and_in_flight(emu: ArgoEmulator, kube: Kube, aiohttp_server: Any) -> None:
    calls: list[tuple[str, str, Any]] = []
    server = await aiohttp_server(argocd_rest_app(emu, TOKEN, calls))
    rest = ArgoRest(str(server.make_url("")), TOKEN)
    result = await asyncio.to_thread(rest.sync, request(revision="abc"), wait_inflight_s=0)
    assert result.requested
    kind, name, body = calls[0]
    assert (kind, name, body["revision"], body["prune"]) == ("sync", "team-demo-hello", "abc", False)
    assert {"name": "broker-event", "value": "EVT1"} in body["infos"]
    assert emu.raw(APPS, "team-demo-hello")["operation"]["info"] == body["infos"]
    busy = await asyncio.to_thread(rest.sync, request(), wait_inflight_s=0.1, poll_s=0.02)
    assert busy.in_flight and not busy.requested and "another operation is already in progress" in busy.detail
    refreshed = await asyncio.to_thread(rest.refresh, request("refresh"))
    assert refreshed.requested and calls[-1] == ("get", "team-demo-hello", "normal")
    bad = ArgoRest(str(server.make_url("")), "wrong-token")
    with pytest.raises(PermanentError, match="401"):
        await asyncio.to_thread(bad.get, "team-demo-hello")
    with pytest.raises(TransientError):
        await asyncio.to_thread(ArgoRest("http://127.0.0.1:9", TOKEN).get, "x")

"""Harbor push -> image update -> sync -> health, end to end: GitOps.process on kmock's emulator over
real HTTP, real Redis, a fake Argo CD controller, and the rq jobs that follow the sync after process()
returned. Strategies, no-downgrade, coalescing of bursts (across workers and through the queue), two
workers racing for one Application, re-runs after a crash."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import redis
from kubernetes import client
from rq import Queue
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry

from broker.deployments import DeploymentStore
from broker.errors import TransientError
from broker.gitops.follow_job import start_follow
from broker.settings import Settings
from broker.store import write_event
from handlers.models import Outcome
from tests.argocd_emulator import APPS, ArgoEmulator, FakeController, eventually
from tests.gitops_fixtures import (
    classic_app,
    harbor_event,
    helm_params,
    make_gitops,
    persist,
    run_event,
    seed_all,
    work_off,
    work_once,
    worker_for,
    writes,
)

pytest_plugins = ["tests.gitops_plugin"]

APP = "team-demo-hello"


def argocd_app(**kw: Any) -> dict[str, Any]:
    kw.setdefault("params", [{"name": "image.tag", "value": "1.4.1", "forceString": True}])
    return classic_app("demo", "hello", write_back="argocd", **kw)


def operation_taken(emu: ArgoEmulator) -> bool:
    """The controller has picked up the requested sync (nothing left in `.operation`)."""
    return "operation" not in emu.raw(APPS, APP)


async def run(gitops: Any, event: Any) -> Outcome:
    return await asyncio.to_thread(gitops.process, event)


async def test_semver_push_writes_back_syncs_and_follows(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    ctx, sent = worker_for(gitops)
    event = harbor_event("demo", "hello", "1.4.3")
    async with FakeController(emu) as controller:
        record = await run_event(ctx, event)
    assert record.status == "done"
    assert helm_params(emu, APP) == {
        "image.tag": "1.4.3",
        "image.repository": "harbor.example.com/team-demo/hello",
    }
    assert [op for name, op in controller.operations] == [
        emu.raw(APPS, APP)["status"]["operationState"]["operation"]
    ]
    kinds = [a.kind for a in record.actions]
    assert kinds == ["write-back", "sync", "follow"]
    assert record.actions[0].decision == "argocd write-back: team-demo-hello=1.4.3"
    assert record.actions[1].decision == "auto-sync is off: an explicit sync deploys the update"
    assert record.actions[2].result == "sync Succeeded, health Healthy"
    assert record.reason == (
        "team-demo-hello: updated team-demo-hello=1.4.3; auto-sync is off: an explicit sync deploys the "
        "update; sync requested; following; followed team-demo-hello: sync Succeeded, health Healthy"
    )
    assert [n.kind for n in sent] == [
        "image.pushed",
        "update.written",
        "sync.started",
        "sync.succeeded",
        "app.healthy",
        "deployment.succeeded",
    ]
    done = sent[-1]
    assert (
        done.team == "demo"
        and done.app == APP
        and done.data["image"].startswith("harbor.example.com/team-demo/hello:1.4.3@")
    )
    assert done.data["argocd"] == {"phase": "Succeeded", "health": "Healthy", "message": "sync succeeded"}
    deployment = DeploymentStore(sync_redis, ttl_s=60).get(record.deployment_id or "")
    assert deployment is not None and deployment.status == "succeeded" and deployment.tag == "1.4.3"
    rollout = deployment.apps[APP]
    assert (rollout.method, rollout.sync_mode, rollout.phase, rollout.health) == (
        "argocd",
        "sync",
        "Succeeded",
        "Healthy",
    )
    assert deployment.events == [event.id]
    gitops.close()


async def test_process_returns_once_the_sync_is_requested_and_short_jobs_follow_it(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    """The worker is free again right after the sync request: the follow-up runs as short jobs, each
    one look at the Application that schedules the next while the sync is still running."""
    app = argocd_app()
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    ctx, sent = worker_for(gitops)
    event = harbor_event("demo", "hello", "1.4.3")
    async with FakeController(emu, run_s=0.6):
        await asyncio.to_thread(persist, ctx, event)
        await asyncio.to_thread(work_once, ctx, with_scheduler=False)  # the event's own job only
        # Argo CD is still running the sync (0.6 s): the event's job did not wait for it.
        state = (emu.raw(APPS, APP).get("status") or {}).get("operationState") or {}
        assert state.get("phase") in (None, "Running")
        record = ctx.store.get(event.id)
        assert record is not None and record.status == "done"
        assert [a.kind for a in record.actions] == ["write-back", "sync"]
        assert (record.reason or "").endswith("; sync requested; following")
        assert [n.kind for n in sent] == ["image.pushed", "update.written", "sync.started"]
        queue = Queue(gitops_settings.queue_name, connection=sync_redis)
        [job_id] = ScheduledJobRegistry(queue=queue).get_job_ids()
        job = queue.fetch_job(job_id)
        assert job is not None and job.func_name == "broker.worker.follow_sync"
        spec = job.args[0]
        assert (spec["event_id"], spec["app"], spec["deployment_id"], spec["explicit"]) == (
            event.id,
            APP,
            record.deployment_id,
            True,
        )
        assert spec["deadline"] == pytest.approx(spec["since"] + gitops_settings.gitops_sync_follow_timeout_s)
        looks = await asyncio.to_thread(count_looks, ctx)
    assert looks >= 2  # several short jobs, not one that waited
    followed = ctx.store.get(event.id)
    assert followed is not None and followed.status == "done"
    assert [a.kind for a in followed.actions] == ["write-back", "sync", "follow"]
    assert followed.actions[-1].result == "sync Succeeded, health Healthy"
    assert [n.kind for n in sent[3:]] == ["sync.succeeded", "app.healthy", "deployment.succeeded"]
    # Idempotent: a second chain for the same (event, app) (a re-run) records nothing twice.
    await asyncio.to_thread(
        start_follow,
        gitops.engine,
        event_id=event.id,
        app=APP,
        team="demo",
        deployment_id=record.deployment_id,
        since=spec["since"],
        explicit=True,
    )
    await asyncio.to_thread(work_off, ctx)
    again = ctx.store.get(event.id)
    assert again is not None and [a.kind for a in again.actions] == ["write-back", "sync", "follow"]
    assert len(sent) == 6
    gitops.close()


def count_looks(ctx: Any) -> int:
    """Run the follow-up chain to its end; returns how many looks (jobs) it took."""
    work_off(ctx)
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    return len([j for j in FinishedJobRegistry(queue=queue).get_job_ids() if j.startswith("follow-")])


async def test_follow_is_off_with_a_zero_timeout(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0})
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    ctx, sent = worker_for(gitops)
    record = await run_event(ctx, harbor_event("demo", "hello", "1.4.3"))
    assert [a.kind for a in record.actions] == ["write-back", "sync"]
    assert record.reason.endswith("; sync requested")
    assert [n.kind for n in sent] == ["image.pushed", "update.written", "sync.started"]
    finished = FinishedJobRegistry(queue=Queue(settings.queue_name, connection=sync_redis)).get_job_ids()
    assert finished and all(job_id.startswith("event-") for job_id in finished)  # no follow-up job


async def test_out_of_order_push_never_downgrades(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    ctx, _ = worker_for(gitops)
    async with FakeController(emu) as controller:
        await run_event(ctx, harbor_event("demo", "hello", "1.4.3"))
        late = await run_event(ctx, harbor_event("demo", "hello", "1.4.2"))
    assert helm_params(emu, APP)["image.tag"] == "1.4.3"
    assert late.status == "done" and "would downgrade 1.4.3 to 1.4.2" in (late.reason or "")
    assert [a.decision for a in late.actions] == ["would downgrade 1.4.3 to 1.4.2"]
    assert len(controller.operations) == 1 and len(writes(emu, APP)) == 1


async def test_downgrade_is_judged_against_what_runs(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    app["status"] = {"summary": {"images": ["harbor.example.com/team-demo/hello:1.4.5"]}}
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    outcome = await run(gitops, harbor_event("demo", "hello", "1.4.4"))
    assert "would downgrade 1.4.5 to 1.4.4" in outcome.reason and writes(emu, APP) == []


@pytest.mark.parametrize(
    ("strategy", "pushes", "expected_tag", "refusals"),
    [
        (
            "digest",
            [
                ("main", "sha256:" + "1" * 64, 100),
                ("main", "sha256:" + "1" * 64, 101),
                ("1.0", "sha256:" + "3" * 64, 102),
                ("main", "sha256:" + "2" * 64, 103),
                ("main", "sha256:" + "0" * 64, 50),
            ],
            "main@sha256:" + "2" * 64,
            ["already at", "not the tracked tag main", "older push"],
        ),
        (
            "newest-build",
            [("build-7", None, 100), ("build-9", None, 300), ("build-8", None, 200)],
            "build-9",
            ["older push"],
        ),
        (
            "alphabetical",
            [("2024-05-01", None, 100), ("2024-05-03", None, 101), ("2024-05-02", None, 102)],
            "2024-05-03",
            ["would downgrade 2024-05-03 to 2024-05-02"],
        ),
    ],
)
async def test_strategies_end_to_end(
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
    strategy: str,
    pushes: list[tuple[str, str | None, int]],
    expected_tag: str,
    refusals: list[str],
) -> None:
    app = argocd_app(strategy=strategy, tag="main", params=[])
    seed_all(emu, app)
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0})
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    reasons = []
    for tag, digest, at in pushes:
        event = harbor_event("demo", "hello", tag, occur_at=at)
        event = event.model_copy(update={"digest": digest or "sha256:" + f"{at:064d}"})
        reasons.append((await run(gitops, event)).reason)
        # the controller is absent: clear each operation as if it had completed
        await emu.change(APPS, APP, {"operation": None})
    assert helm_params(emu, APP)["image.tag"] == expected_tag
    refused = [r for r in reasons if not r.startswith("team-demo-hello: updated")]
    assert len(refused) == len(refusals)
    for reason, expected in zip(refused, refusals, strict=True):
        assert expected in reason


async def test_burst_across_concurrent_workers_becomes_one_update_and_one_sync(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    settings = gitops_settings.model_copy(update={"gitops_coalesce_window_ms": 400})
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    events = [harbor_event("demo", "hello", tag) for tag in ("1.4.2", "1.4.5", "1.4.3")]
    async with FakeController(emu) as controller:
        outcomes = await asyncio.gather(*(run(gitops, e) for e in events))
        await eventually(lambda: operation_taken(emu))  # process() returns once the sync is requested
    assert helm_params(emu, APP)["image.tag"] == "1.4.5"
    assert len(writes(emu, APP)) == 1 and len(controller.operations) == 1
    leaders = [(e, o) for e, o in zip(events, outcomes, strict=True) if "coalesced into" not in o.reason]
    assert len(leaders) == 1
    leader, leader_outcome = leaders[0]
    assert (
        leader_outcome.actions[0].kind == "coalesce"
        and "coalesced 3 pushes into one update" in leader_outcome.actions[0].decision
    )
    for event, outcome in zip(events, outcomes, strict=True):
        if event is not leader:
            assert (
                outcome.status == "done"
                and outcome.reason == f"team-demo-hello: coalesced into event {leader.id}"
            )
            assert outcome.notices == [] and outcome.deployment_id == leader_outcome.deployment_id
    record = DeploymentStore(sync_redis, ttl_s=60).get(leader_outcome.deployment_id or "")
    assert record is not None and sorted(record.events) == sorted(
        e.id for e in events
    )  # one record per rollout


async def test_burst_still_queued_is_folded_in_by_a_single_worker(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    settings = gitops_settings.model_copy(
        update={"gitops_coalesce_window_ms": 300, "gitops_sync_follow_timeout_s": 0}
    )
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    first = harbor_event("demo", "hello", "1.4.2")
    queued = [
        harbor_event("demo", "hello", "1.4.4", received_at=first.received_at + timedelta(milliseconds=100)),
        harbor_event("demo", "hello", "1.4.3", received_at=first.received_at + timedelta(milliseconds=200)),
    ]
    late = harbor_event("demo", "hello", "1.4.9", received_at=first.received_at + timedelta(seconds=5))
    pipe = sync_redis.pipeline()
    for event in [*queued, late]:  # what the web tier persisted while the worker was busy
        write_event(pipe, event, ttl_s=600)
    pipe.execute()
    outcome = await run(gitops, first)
    assert helm_params(emu, APP)["image.tag"] == "1.4.4" and len(writes(emu, APP)) == 1
    assert "coalesced 3 pushes" in outcome.actions[0].decision
    for event in queued:
        later = await run(gitops, event)
        assert later.reason == f"team-demo-hello: coalesced into event {first.id}"
    assert len(writes(emu, APP)) == 1
    await emu.change(APPS, APP, {"operation": None})  # the first sync has run
    outside = await run(gitops, late)  # received well after the window: its own update
    assert "updated" in outside.reason and helm_params(emu, APP)["image.tag"] == "1.4.9"


async def test_two_workers_racing_for_one_application(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    emu.patch_delay_s = 0.05  # widen the window between read and write
    other_worker = redis.Redis.from_url(gitops_settings.redis_url or "")
    gitops_a = make_gitops(gitops_settings, sync_redis, kube_config, app)
    gitops_b = make_gitops(gitops_settings, other_worker, kube_config, app)
    async with FakeController(emu, run_s=0.02) as controller:
        outcomes = await asyncio.gather(
            run(gitops_a, harbor_event("demo", "hello", "1.4.6")),
            run(gitops_b, harbor_event("demo", "hello", "1.4.4")),
        )
        await eventually(lambda: operation_taken(emu))
    other_worker.close()
    assert helm_params(emu, APP)["image.tag"] == "1.4.6"
    kinds = Counter(
        "coalesced" if "coalesced into" in o.reason else "updated" if "updated" in o.reason else "refused"
        for o in outcomes
    )
    assert all(o.status == "done" for o in outcomes) and kinds["updated"] >= 1
    # One writer at a time: whoever came second saw the first one's write (a downgrade refused, or the
    # burst folded in); no write was lost, and each update got exactly one sync.
    assert len(writes(emu, APP)) == kinds["updated"] == len(controller.operations)
    if kinds["refused"]:
        assert any("would downgrade 1.4.6 to 1.4.4" in o.reason for o in outcomes)


async def test_rerun_after_write_back_does_not_write_twice_and_syncs(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    gitops = make_gitops(gitops_settings, sync_redis, kube_config, app)
    event = harbor_event("demo", "hello", "1.4.3")
    emu.failing_operations = 1  # the write-back lands, then the sync request fails (worker dies, job retried)
    with pytest.raises(TransientError, match="503"):
        await run(gitops, event)
    assert helm_params(emu, APP)["image.tag"] == "1.4.3" and len(writes(emu, APP)) == 1
    ctx, _ = worker_for(gitops)
    async with FakeController(emu) as controller:
        record = await run_event(ctx, event)
    assert len(writes(emu, APP)) == 1 and len(controller.operations) == 1
    assert record.actions[0].decision == (
        "already carries team-demo-hello=1.4.3 (written by this event on an earlier attempt)"
    )
    assert [a.kind for a in record.actions] == ["write-back", "sync", "follow"]
    again = await run(gitops, event)  # a third run: neither writes nor syncs again
    assert len(controller.operations) == 1
    assert any("already requested by this event" in a.decision for a in again.actions)


async def test_no_match_constraint_and_alias(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    app = argocd_app()
    seed_all(emu, app)
    settings = gitops_settings.model_copy(
        update={
            "registry_aliases": {"harbor.external.io": "harbor.example.com"},
            "gitops_sync_follow_timeout_s": 0,
        }
    )
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    nobody = await run(gitops, harbor_event("demo", "other", "1.0.0"))
    assert (
        nobody.status == "ignored"
        and nobody.reason == "no matching workload for harbor.example.com/team-demo/other"
    )
    rejected = await run(gitops, harbor_event("demo", "hello", "2.0.0"))
    assert rejected.status == "ignored" and rejected.reason == "tag 2.0.0 rejected by constraint ~1.4"
    aliased = await run(gitops, harbor_event("demo", "hello", "1.4.7", host="harbor.external.io"))
    assert aliased.status == "done" and helm_params(emu, APP)["image.tag"] == "1.4.7"


async def test_operation_in_flight(
    emu: ArgoEmulator, kube_config: client.Configuration, gitops_settings: Settings, sync_redis: redis.Redis
) -> None:
    manual = argocd_app()
    auto = classic_app("demo", "auto", write_back="argocd", auto_sync=True)
    seed_all(emu, manual, auto)
    for name in (APP, "team-demo-auto"):
        await emu.change(
            APPS,
            name,
            {"status": {"operationState": {"phase": "Running", "startedAt": "2026-01-01T00:00:00Z"}}},
        )
    settings = gitops_settings.model_copy(update={"gitops_sync_follow_timeout_s": 0})
    gitops = make_gitops(settings, sync_redis, kube_config, manual, auto)
    with pytest.raises(TransientError, match="operation in flight: operation running since"):
        await run(gitops, harbor_event("demo", "hello", "1.4.3"))
    outcome = await run(gitops, harbor_event("demo", "auto", "1.4.3"))
    # auto-sync + argocd write-back: no explicit sync is needed in the first place
    assert (
        outcome.actions[-1].decision
        == "auto-sync is on: Argo CD syncs the changed Application spec by itself"
    )

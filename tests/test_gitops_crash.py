"""Crash safety of the GitOps core (issue 7, item 2): a real worker process, the production command
`python -m broker.cli worker --burst --queues events` configured through BROKER_* variables, is SIGKILLed
at a chosen point of a Harbor push's job: before its Application write-back lands, after it landed but
before the answer came back, before its sync request lands, after it landed, and in the middle of a
`git push` to a bare repository whose pre-receive hook waits. Each point is reached for certain: the
emulator holds the request in question, the hook waits for a file.

Then the abandoned job is handed back (`recover_abandoned`, as a restarted worker does once the dead one's
heartbeat has lapsed) and a fresh worker finishes it. Whatever the point, the event ends `done`, the
image was written exactly once (one applied patch, or one commit), exactly one sync was requested, and
the follow-up recorded the result."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client
from rq import Queue
from rq.registry import StartedJobRegistry

from broker.deployments import DeploymentStore
from broker.settings import Settings
from broker.worker import WorkerContext, recover_abandoned, worker_queues
from handlers.models import Event
from tests.argocd_emulator import ArgoEmulator, FakeController, eventually
from tests.gitops_fixtures import (
    classic_app,
    git,
    harbor_event,
    helm_params,
    make_gitops,
    make_remote,
    persist,
    seed_all,
    show,
    work_off,
    worker_for,
    write_kubeconfig,
)

pytest_plugins = ["tests.gitops_plugin"]

APP = "team-demo-hello"
STARTUP_S = 60.0  # a fresh interpreter importing kubernetes on a busy CI box
ENV_SETTINGS = (
    "redis_url",
    "data_dir",
    "retry_intervals",
    "gitops_coalesce_window_ms",
    "gitops_sync_poll_s",
    "gitops_sync_follow_timeout_s",
    "gitops_sync_wait_inflight_s",
    "gitops_lock_wait_s",
    "gitops_catalog_wait_s",
)


def worker_env(settings: Settings, kubeconfig: Path) -> dict[str, str]:
    """The worker process's configuration, as an operator gives it: BROKER_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_") and k != "KUBECONFIG"}
    for name in ENV_SETTINGS:
        value = getattr(settings, name)
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        env[f"BROKER_{name.upper()}"] = text
    env.update(BROKER_KUBECONFIG=str(kubeconfig), BROKER_LOG_LEVEL="WARNING")
    return env


async def kill_worker_when(
    settings: Settings,
    kubeconfig: Path,
    log: Path,
    reached: Callable[[], object],
    timeout_s: float = STARTUP_S,
) -> None:
    """Start a worker process, wait (serving the emulator meanwhile) until `reached()`, SIGKILL it."""
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "worker", "--burst", "--queues", "events"],
            env=worker_env(settings, kubeconfig),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def point_or_exit() -> bool:
            assert worker.poll() is None, f"the worker exited early: {log.read_text()[-2000:]}"
            return bool(reached())

        await eventually(point_or_exit, timeout_s=timeout_s)
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.wait, 10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


async def queued_push(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    settings: Settings,
    sync_redis: redis.Redis,
    app: dict[str, Any],
    tag: str,
) -> tuple[Any, WorkerContext, Path, Event]:
    """`app` in the emulator, a kubeconfig for the worker process, the engine and worker context for the
    recovery, and a Harbor push of `tag` queued as intake queues it."""
    seed_all(emu, app)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(emu.url))
    gitops = make_gitops(settings, sync_redis, kube_config, app)
    ctx, _ = worker_for(gitops)
    event = harbor_event("demo", "hello", tag)
    await asyncio.to_thread(persist, ctx, event)
    return gitops, ctx, kubeconfig, event


def assert_abandoned(ctx: WorkerContext, event: Event) -> None:
    record = ctx.store.get(event.id)
    assert record is not None and record.status == "processing" and record.attempts == 1
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    assert StartedJobRegistry(queue=queue).get_job_ids(), "the killed job stays in rq's started registry"


def recover(ctx: WorkerContext) -> None:
    """What the next worker does once the dead one's heartbeat has lapsed, then the work itself."""
    recover_abandoned(ctx.redis, worker_queues(ctx.settings, ctx.redis), now=time.time() + 3600)
    work_off(ctx, timeout_s=30)


def assert_finished(ctx: WorkerContext, event: Event) -> Event:
    record = ctx.store.get(event.id)
    assert record is not None
    assert record.status == "done" and record.attempts == 2, record.reason
    assert [a.kind for a in record.actions] == ["write-back", "sync", "follow"]
    assert record.actions[-1].result == "sync Succeeded, health Healthy"
    deployment = DeploymentStore(ctx.redis, ttl_s=60).get(record.deployment_id or "")
    assert deployment is not None and deployment.apps[APP].status == "succeeded"
    return record


WRITTEN_BEFORE = "already carries team-demo-hello=1.4.3 (written by this event on an earlier attempt)"


@pytest.mark.parametrize(
    ("hold", "landed", "first_decision"),
    [
        (("write-back", "before"), [], "argocd write-back: team-demo-hello=1.4.3"),
        (("write-back", "after"), ["write-back"], WRITTEN_BEFORE),
        (("operation", "before"), ["write-back"], WRITTEN_BEFORE),
        (("operation", "after"), ["write-back", "operation"], WRITTEN_BEFORE),
    ],
    ids=[
        "before-write-back",
        "write-back-landed-unanswered",
        "before-sync-request",
        "sync-landed-unanswered",
    ],
)
async def test_worker_killed_around_the_argocd_write_back_and_the_sync(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
    hold: tuple[str, str],
    landed: list[str],
    first_decision: str,
) -> None:
    app = classic_app("demo", "hello", write_back="argocd", params=[{"name": "image.tag", "value": "1.4.1"}])
    gitops, ctx, kubeconfig, event = await queued_push(
        tmp_path, emu, kube_config, gitops_settings, sync_redis, app, "1.4.3"
    )
    emu.hold = hold
    async with FakeController(emu) as controller:
        await kill_worker_when(gitops_settings, kubeconfig, tmp_path / "worker.log", emu.holding.is_set)
        emu.released.set()  # the held request ends; its client is gone
        assert [what for _, what in emu.applied] == landed
        assert_abandoned(ctx, event)
        await asyncio.to_thread(recover, ctx)
    record = assert_finished(ctx, event)
    assert record.actions[0].decision == first_decision
    assert helm_params(emu, APP)["image.tag"] == "1.4.3"
    # One write-back and one sync request landed, whichever attempt made them.
    assert emu.applied == [(APP, "write-back"), (APP, "operation")]
    assert len(controller.operations) == 1
    gitops.close()


PRE_RECEIVE = """#!/bin/sh
# Hold the first push until {release} exists, then {verdict} it; later pushes pass.
cat >/dev/null
if [ -e '{started}' ]; then exit 0; fi
touch '{started}'
i=0
while [ ! -e '{release}' ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done
touch '{finished}'
exit {code}
"""


@pytest.mark.parametrize(
    "push_lands", [False, True], ids=["push-refused-after-kill", "push-lands-after-kill"]
)
async def test_worker_killed_during_a_git_push(
    tmp_path: Path,
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
    push_lands: bool,
) -> None:
    bare, _ = make_remote(tmp_path, "charts", {"k8s-deployment/Chart.yaml": "name: k8s-deployment\n"})
    started, release, finished = (tmp_path / name for name in ("push-started", "push-release", "push-done"))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(
        PRE_RECEIVE.format(
            started=started,
            release=release,
            finished=finished,
            verdict="accept" if push_lands else "refuse",
            code=0 if push_lands else 1,
        )
    )
    hook.chmod(0o755)
    app = classic_app("demo", "hello", repo_url=str(bare), path="k8s-deployment")
    gitops, ctx, kubeconfig, event = await queued_push(
        tmp_path, emu, kube_config, gitops_settings, sync_redis, app, "1.4.2"
    )
    async with FakeController(emu) as controller:
        await kill_worker_when(gitops_settings, kubeconfig, tmp_path / "worker.log", started.exists)
        release.touch()  # the orphaned `git push` finishes, or is refused, without its worker
        await eventually(finished.exists, timeout_s=10)
        if push_lands:
            await eventually(lambda: count_commits(bare) == 2, timeout_s=10)
        else:
            assert count_commits(bare) == 1
        assert_abandoned(ctx, event)
        assert controller.operations == []
        await asyncio.to_thread(recover, ctx)
    record = assert_finished(ctx, event)
    written = "git write-back: team-demo-hello=1.4.2"
    assert record.actions[0].decision == (WRITTEN_BEFORE.replace("1.4.3", "1.4.2") if push_lands else written)
    assert count_commits(bare) == 2  # the seed and exactly one write-back commit
    assert event.id in git(bare, "log", "-1", "--format=%B", "main")
    override = yaml.safe_load(show(bare, "k8s-deployment/.argocd-source-team-demo-hello.yaml"))
    assert {p["name"]: p["value"] for p in override["helm"]["parameters"]}["image.tag"] == "1.4.2"
    assert len(controller.operations) == 1
    assert [what for _, what in emu.applied] == ["operation"]
    gitops.close()


def count_commits(bare: Path) -> int:
    return int(git(bare, "rev-list", "--count", "main").strip())

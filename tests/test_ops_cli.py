"""The ops command line against a real broker: `broker events [--follow]`, `event`, `replay`, `deadletter`
run as subprocesses against an aiohttp test server on a real port; `broker check` against real Redis, a
kmock Kubernetes emulator and a fake Argo CD REST server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import pytest
from aiohttp import web
from pydantic import SecretStr

from broker.api.stream import FANOUT
from broker.app import create_app
from broker.ops_check import run_checks
from broker.ops_format import event_table
from broker.settings import Settings
from broker.team_tokens import TOKEN_KEY, token_digest
from broker.worker import no_cluster
from handlers.models import Event, Outcome
from tests import payloads
from tests.argocd_emulator import APPS, ArgoEmulator
from tests.conftest import ADMIN_TOKEN, DRONE_SECRET, GITEA_SECRET, REDIS_URL
from tests.gitops_fixtures import classic_app
from tests.signing import drone_headers, gitea_headers
from tests.worker_support import make_context, run_burst

pytest_plugins = ["tests.gitops_plugin"]
STATUS = re.compile(r"\s(queued|processing|done|ignored|failed|dead)\s")


@pytest.fixture
async def server(aiohttp_server, settings):
    return await aiohttp_server(create_app(settings))


@pytest.fixture
async def client(aiohttp_client, server):
    """A test client on the CLI's server (one app per test: they would share one spool directory)."""
    return await aiohttp_client(server)


def base(server) -> str:
    return str(server.make_url("")).rstrip("/")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_") and k != "KUBECONFIG"}
    return {**env, "COLUMNS": "220", "NO_COLOR": "1", **extra}


async def broker(*args: str, token: str | None = ADMIN_TOKEN, **env: str) -> tuple[int, str, str]:
    environment = clean_env(**env, **({"BROKER_TOKEN": token} if token else {}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker.cli", *args, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def post_push(client, owner: str = "team-demo", seed: str = "x") -> str:
    body = payloads.gitea_push(owner=owner, after=payloads.fake_sha(f"{owner}-{seed}"))
    resp = await client.post("/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET))
    return (await resp.json())["event_id"]


async def post_build(client, number: int) -> str:
    body = payloads.drone_build(number=number, build_id=2000 + number)
    resp = await client.post("/hooks/drone", data=body, headers=drone_headers(body, DRONE_SECRET))
    return (await resp.json())["event_id"]


def failing(event: Event) -> Outcome:
    raise RuntimeError("Argo CD answered 503")


def rows(table: str) -> list[str]:
    return [line for line in table.splitlines()[1:] if line and not line.startswith("…")]


async def test_events_lists_newest_first_with_filters(server, client):
    pushes = [await post_push(client, seed=str(n)) for n in range(2)]
    build = await post_build(client, 7)
    code, out, err = await broker("events", "--url", base(server))
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["RECEIVED", "ID", "SOURCE"]
    assert [line.split()[2] for line in rows(out)] == [build, pushes[1], pushes[0]]

    code, out, _ = await broker("events", "--url", base(server), "--source", "drone")
    assert [line.split()[2] for line in rows(out)] == [build]
    assert "build #7 success" in out

    code, out, _ = await broker("events", "--url", base(server), "--limit", "2")
    assert len(rows(out)) == 2 and f"--cursor {pushes[1]}" in out

    code, out, _ = await broker("events", "--url", base(server), "--json", "--team", "demo", "--type", "push")
    assert [item["id"] for item in json.loads(out)["items"]] == [pushes[1], pushes[0]]


async def test_event_shows_what_came_in_and_what_was_decided(server, client, settings):
    event_id = await post_push(client)
    run_burst(make_context(settings, no_cluster)[0])
    code, out, err = await broker("event", event_id, "--url", base(server))
    assert code == 0, err
    assert f"gitea push  {event_id}  done" in out
    assert "actions (1)" in out and "plan team-demo/hello: skipped" in out
    assert "X-Gitea-Event: push" in out
    assert "payload" not in out.split("headers")[-1]

    _, out, _ = await broker("event", event_id, "--url", base(server), "--payload")
    assert '"ref": "refs/heads/main"' in out
    _, out, _ = await broker("event", event_id, "--url", base(server), "--json")
    record = json.loads(out)
    assert record["id"] == event_id and record["payload"]["ref"] == "refs/heads/main"

    code, _, err = await broker("event", "0" * 26, "--url", base(server))
    assert code == 1 and "404: no such event" in err


async def test_replay_and_deadletter_with_progress(server, client, settings):
    dead = [await post_build(client, n) for n in (1, 2, 3)]
    run_burst(make_context(settings.model_copy(update={"max_attempts": 1}), failing)[0])

    code, out, _ = await broker("deadletter", "--url", base(server))
    assert code == 0
    assert sorted(line.split()[2] for line in rows(out)[:-1]) == sorted(dead)
    assert out.rstrip().endswith("3 dead events")

    code, out, _ = await broker("replay", dead[0], "--url", base(server))
    assert (code, out) == (0, f"{dead[0]}: queued\n")
    code, out, _ = await broker("replay", dead[0], "--url", base(server))
    assert code == 1 and "refused (409" in out  # it is queued: nothing to replay yet

    code, out, err = await broker("deadletter", "--replay-all", "--url", base(server))
    assert code == 0, err
    assert "replaying 2/2 (100%)" in err
    assert out == "replayed 2 of 2 dead events\n"
    for event_id in dead:
        resp = await client.get(
            f"/api/v1/events/{event_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert (await resp.json())["status"] == "queued"
    code, out, _ = await broker("deadletter", "--replay-all", "--url", base(server))
    assert (code, out) == (0, "no dead events\n")


async def test_follow_tails_changes_live(server, client, settings):
    environment = clean_env(BROKER_TOKEN=ADMIN_TOKEN)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker.cli", "events", "--follow", "--url", base(server), env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().startswith("no events")
        fanout = server.app[FANOUT]
        for _ in range(300):  # the tail is subscribed once the web tier counts its stream
            if fanout.clients:
                break
            await asyncio.sleep(0.02)
        event_id = await post_push(client, seed="tail")
        run_burst(make_context(settings, no_cluster)[0])
        seen: list[str] = []
        while not any(event_id in line and re.search(r"\sdone\s", line) for line in seen):
            seen.append((await asyncio.wait_for(proc.stdout.readline(), 15)).decode())
        statuses = [re.search(STATUS, line).group(1) for line in seen if event_id in line]
        assert statuses == ["queued", "processing", "done"]
    finally:
        proc.terminate()
        await proc.wait()


async def test_a_team_token_sees_only_its_team(server, client, sync_redis):
    sync_redis.hset(TOKEN_KEY.format(digest=token_digest("bkt_cli-demo")), mapping={"team": "demo"})
    mine = await post_push(client, seed="mine")
    theirs = await post_push(client, owner="team-other", seed="theirs")
    code, out, _ = await broker("events", "--url", base(server), token="bkt_cli-demo")
    assert code == 0 and [line.split()[2] for line in rows(out)] == [mine]
    code, _, err = await broker("event", theirs, "--url", base(server), token="bkt_cli-demo")
    assert code == 1 and "404" in err


async def test_missing_token_and_unreachable_broker_fail_clearly(server):
    code, _, err = await broker("events", "--url", base(server), token=None)
    assert code == 1 and "no token: set BROKER_TOKEN" in err
    code, _, err = await broker("events", "--url", base(server), token="wrong")
    assert code == 1 and "401: invalid bearer token" in err
    code, _, err = await broker("events", "--url", "http://127.0.0.1:1")
    assert code == 1 and "cannot reach the broker at http://127.0.0.1:1" in err
    _, out, _ = await broker("events", token=None, BROKER_URL=base(server), BROKER_ADMIN_TOKEN=ADMIN_TOKEN)
    assert out.startswith("no events")  # the admin token from the environment is the fallback


def test_table_strips_terminal_escapes():
    event = {
        "id": "01J",
        "source": "gitea",
        "type": "push",
        "status": "done",
        "repo": "a/\x1b[31mb",
        "reason": "x\ny",
    }
    table = event_table([event], width=200)
    assert "\x1b" not in table and "\n" not in table.rstrip("\n").split("\n", 1)[1]


# --- broker check --------------------------------------------------------------------------------


def levels(report, area: str) -> list[tuple[str, str]]:
    return [(level, text) for level, where, text in report.findings if where == area]


async def test_check_says_what_is_missing(sync_redis):
    settings = Settings(redis_url=REDIS_URL, gitea_secret=GITEA_SECRET)
    report = await asyncio.to_thread(run_checks, settings)
    text = report.render()
    assert ("ok", "BROKER_GITEA_SECRET is set: /hooks/gitea is enabled") in levels(report, "Settings")
    assert ("warn", "BROKER_DRONE_SECRET is not set: /hooks/drone answers 503") in levels(report, "Settings")
    assert any(level == "ok" and "reachable at" in t for level, t in levels(report, "Redis"))
    assert any(level == "warn" and "no worker registered" in t for level, t in levels(report, "Redis"))
    assert any(
        level == "warn" and t.startswith("not configured") for level, t in levels(report, "Kubernetes")
    )
    assert any(level == "info" and "not configured" in t for level, t in levels(report, "Argo CD REST"))
    assert report.exit_code() == 0 and report.exit_code(strict=True) == 1
    assert "0 problems, 5 warnings: nothing is broken" in text


async def test_check_fails_on_broken_settings_and_unreachable_redis(tmp_path):
    settings = Settings(
        redis_url="redis://:hunter2@127.0.0.1:1/0",
        kubeconfig=str(tmp_path / "missing"),
        argocd_url="https://argocd.example.com",
    )
    report = await asyncio.to_thread(run_checks, settings)
    fails = [text for level, _, text in report.findings if level == "fail"]
    assert any("cannot reach redis://:***@127.0.0.1:1/0" in t for t in fails)
    assert any("BROKER_KUBECONFIG points at" in t for t in fails)
    assert any("BROKER_ARGOCD_TOKEN is not" in t for t in fails)
    assert "hunter2" not in report.render()
    assert report.exit_code() == 1

    code, out, _ = await broker("check", token=None, BROKER_REDIS_URL="redis://127.0.0.1:1/0")
    assert code == 1 and "✗ cannot reach redis://127.0.0.1:1/0" in out


KUBECONFIG = """\
apiVersion: v1
kind: Config
current-context: kmock
clusters: [{{name: kmock, cluster: {{server: "{server}"}}}}]
contexts: [{{name: kmock, context: {{cluster: kmock, user: broker}}}}]
users: [{{name: broker, user: {{token: t}}}}]
"""


def kubeconfig_for(emu: ArgoEmulator, path: Path) -> str:
    path.write_text(KUBECONFIG.format(server=str(emu.url).rstrip("/")))
    return str(path)


async def test_check_lists_the_applications_and_asks_argocd(
    tmp_path, emu: ArgoEmulator, aiohttp_server, sync_redis
):
    emu.seed(APPS, "team-demo-hello", classic_app("demo", "hello"))
    plain = classic_app("demo", "plain")
    plain["metadata"]["annotations"] = {}
    emu.seed(APPS, "team-demo-plain", plain)

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"Version": "v2.13.1"})

    async def applications(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer project-token":
            return web.json_response({"error": "invalid session", "message": "invalid session"}, status=401)
        return web.json_response({"items": [{"metadata": {"name": "team-demo-hello"}}]})

    argo = web.Application()
    argo.router.add_get("/api/version", version)
    argo.router.add_get("/api/v1/applications", applications)
    argocd = await aiohttp_server(argo)
    settings = Settings(
        redis_url=REDIS_URL,
        kubeconfig=kubeconfig_for(emu, tmp_path / "kubeconfig"),
        argocd_url=str(argocd.make_url("")),
        argocd_token=SecretStr("project-token"),
    )
    report = await asyncio.to_thread(run_checks, settings)
    kube = levels(report, "Kubernetes")
    assert ("ok", "2 Applications in namespace argocd, 1 with Image Updater annotations") in kube
    assert any(level == "ok" and t.startswith("API server http://") for level, t in kube)
    argo_found = levels(report, "Argo CD REST")
    argo_url = str(argocd.make_url("")).rstrip("/")
    assert argo_found == [
        (
            "ok",
            f"{argo_url} (Argo CD v2.13.1) accepted the token; 1 application visible",
        )
    ]

    wrong = settings.model_copy(update={"argocd_token": SecretStr("stale")})
    report = await asyncio.to_thread(run_checks, wrong)
    assert any(
        level == "fail" and "refused the token (401)" in t for level, t in levels(report, "Argo CD REST")
    )
    assert report.exit_code() == 1

"""deploy/examples, the Dockerfile and scripts/fetch-tools.sh: the examples agree with each other and with the
chart, the sender settings point at the broker, and register_webhooks.py makes the documented Gitea and Harbor
calls (create, then update in place) against fake APIs over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "chart"
EXAMPLES = REPO / "deploy" / "examples"
K8S_VERSION = "1.31.0"


def example(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def test_apl_examples_agree_with_each_other() -> None:
    [workload] = example("apl-workload.yaml")
    [app] = example("argocd-application.yaml")
    production = yaml.safe_load((EXAMPLES / "values-production.yaml").read_text())
    assert workload["kind"] == "AplTeamWorkload"
    assert workload["metadata"]["labels"]["apl.io/teamId"] == "admin"
    assert app["metadata"]["name"] == f"team-admin-{workload['metadata']['name']}"
    assert app["metadata"]["namespace"] == production["argocd"]["namespace"]
    assert app["spec"]["project"] == "default"
    assert app["spec"]["destination"]["namespace"] == workload["spec"]["namespace"]
    chart_source, values_source = app["spec"]["sources"]
    assert (chart_source["repoURL"], chart_source["path"], chart_source["targetRevision"]) == (
        workload["spec"]["url"],
        workload["spec"]["path"],
        workload["spec"]["revision"],
    )
    assert (REPO / chart_source["path"] / "Chart.yaml").is_file()
    assert chart_source["helm"]["valueFiles"] == [
        "$values/env/teams/admin/workloadValues/webhook-broker.yaml"
    ]
    assert values_source["ref"] == "values"
    [secret] = example("broker-secret.example.yaml")
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] == production["secrets"]["existingSecret"]
    assert secret["metadata"]["namespace"] == workload["spec"]["namespace"]
    chart_keys = set(yaml.safe_load((CHART / "values.yaml").read_text())["secrets"]["keys"].values())
    assert chart_keys | {production["worker"]["autoscaling"]["keda"]["passwordSecretKey"]} == set(
        secret["stringData"]
    )
    redis_ha = yaml.safe_load((EXAMPLES / "values-redis-ha.yaml").read_text())
    assert (redis_ha["existingSecret"], redis_ha["authKey"]) == ("webhook-broker-secrets", "REDIS_PASSWORD")
    assert redis_ha["redis"]["config"]["maxmemory-policy"] == "noeviction"


def test_sender_settings_point_at_the_broker() -> None:
    drone_values, drone_secret = example("drone-server-env.yaml")
    assert drone_values["env"]["DRONE_WEBHOOK_EVENTS"] == "build:*"
    assert drone_values["env"]["DRONE_WEBHOOK_ENDPOINT"].endswith("/hooks/drone")
    kubernetes_validate.validate(drone_secret, K8S_VERSION, strict=True)
    assert "DRONE_WEBHOOK_SECRET" in drone_secret["stringData"]
    assert drone_values["extraSecretNamesForEnvFrom"] == [drone_secret["metadata"]["name"]]
    gitea = json.loads((EXAMPLES / "gitea-webhook.json").read_text())
    assert gitea["type"] == "gitea" and gitea["config"]["content_type"] == "json"
    assert {"push", "create", "delete"} == set(gitea["events"])
    for name, payload_format in (
        ("harbor-webhook-policy.json", "Default"),
        ("harbor-webhook-policy-cloudevents.json", "CloudEvents"),
    ):
        [target] = json.loads((EXAMPLES / name).read_text())["targets"]
        assert target["payload_format"] == payload_format and target["address"].endswith("/hooks/harbor")


class FakeForge:
    """Gitea's hook API and Harbor's webhook policy API, recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []
        self.gitea_hooks: list[dict[str, Any]] = []
        self.harbor_policies: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body: Any = await request.json() if request.can_read_body else None
        self.calls.append((request.method, request.path, body, dict(request.headers)))
        store = self.gitea_hooks if request.path.startswith("/api/v1/") else self.harbor_policies
        if request.method == "GET":
            return web.json_response(store)
        if request.method == "POST":
            store.append({**body, "id": len(store) + 1})
            return web.json_response(store[-1], status=201)
        return web.json_response({}, status=200)


async def run_script(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "register_webhooks.py"),
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_register_webhooks_creates_then_updates(aiohttp_server: Any) -> None:
    forge = FakeForge()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forge.handle)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    env = {
        "GITEA_URL": base,
        "GITEA_TOKEN": "tok",
        "BROKER_GITEA_SECRET": "s3cret",
        "HARBOR_URL": base,
        "HARBOR_USER": "admin",
        "HARBOR_PASSWORD": "pw",
        "BROKER_HARBOR_AUTH": "Bearer hb",
        "BROKER_URL": "http://b:8080",
    }
    assert "created Gitea hook 1 on team-demo" in await run_script("gitea", "team-demo", env=env)
    assert "updated Gitea hook 1" in await run_script("gitea", "team-demo", env=env)
    method, path, body, headers = forge.calls[1]
    assert (method, path, headers["Authorization"]) == ("POST", "/api/v1/orgs/team-demo/hooks", "token tok")
    assert body["config"] == {"url": "http://b:8080/hooks/gitea", "content_type": "json", "secret": "s3cret"}
    assert forge.calls[3][:2] == ("PATCH", "/api/v1/orgs/team-demo/hooks/1")
    assert "type" not in forge.calls[3][2], "Gitea's EditHookOption has no type"
    await run_script("gitea", "team-demo", "hello", env=env)
    assert forge.calls[-1][:2] == ("PATCH", "/api/v1/repos/team-demo/hello/hooks/1")

    assert "created Harbor webhook policy" in await run_script("harbor", "team-demo", env=env)
    await run_script("harbor", "team-demo", env={**env, "HARBOR_PAYLOAD_FORMAT": "CloudEvents"})
    (_, post_path, policy, post_headers), (put_method, put_path, updated, _) = (
        forge.calls[-3],
        forge.calls[-1],
    )
    assert post_path == "/api/v2.0/projects/team-demo/webhook/policies"
    assert post_headers["X-Is-Resource-Name"] == "true" and post_headers["Authorization"].startswith("Basic ")
    assert policy["targets"][0]["address"] == "http://b:8080/hooks/harbor"
    assert policy["targets"][0]["auth_header"] == "Bearer hb"
    assert (put_method, put_path) == ("PUT", "/api/v2.0/projects/team-demo/webhook/policies/1")
    assert updated["targets"][0]["payload_format"] == "CloudEvents" and updated["id"] == 1


def test_dockerfile_builds_every_package_as_non_root() -> None:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in lines
    assert sum(line.startswith("FROM ") for line in lines) == 2, "multi-stage"
    assert "USER 10001:10001" in lines
    assert 'ENTRYPOINT ["broker"]' in lines and 'CMD ["web"]' in lines
    assert any("BROKER_HOST=0.0.0.0" in line for line in lines)
    pyproject = (REPO / "pyproject.toml").read_text()
    copied = " ".join(line for line in lines if line.startswith("COPY ") and "--from" not in line)
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    packages = ("broker", "handlers", "pyproject.toml", "README.md")
    for package in packages:
        assert package in copied and package not in ignored
    assert 'include = ["broker*", "handlers*"]' in pyproject, "a new top-level package must be copied too"


def test_fetch_tools_is_idempotent() -> None:
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "fetch-tools.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert (REPO / ".tools" / "bin" / "kubectl").is_file()
    assert "already in" in done.stdout or "installed" in done.stdout

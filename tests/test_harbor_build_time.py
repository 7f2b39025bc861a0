"""`newest-build` by build time, as Image Updater orders it: the worker asks Harbor's API (a fake Harbor
over real HTTP here) when the pushed image was built, so an old build pushed again under a new tag does not
replace a newer one; when Harbor cannot say, push time decides, and the event log says which it was."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from aiohttp import web
from kubernetes import client
from pydantic import SecretStr

from broker.executors.harbor_api import HarborUnavailable, artifact_path, parse_created
from broker.settings import Settings
from tests.argocd_emulator import APPS, ArgoEmulator
from tests.gitops_fixtures import classic_app, harbor_event, helm_params, make_gitops, seed_all

pytest_plugins = ["tests.gitops_plugin"]

APP = "team-demo-hello"
OLD, NEW = "sha256:" + "1" * 64, "sha256:" + "2" * 64


class FakeHarbor:
    """Harbor's artifact endpoint: `extra_attrs.created` per digest, and what it was asked."""

    def __init__(self) -> None:
        self.created = {OLD: "2026-11-01T10:00:00.123456789Z", NEW: "2026-11-20T10:00:00Z"}
        self.requests: list[tuple[str, str | None]] = []
        self.down = False

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2.0/projects/{project}/repositories/{repo}/artifacts/{ref}", self.artifact)
        return app

    async def artifact(self, request: web.Request) -> web.Response:
        self.requests.append((request.raw_path, request.headers.get("Authorization")))
        if self.down:
            return web.json_response({"errors": [{"code": "UNKNOWN"}]}, status=500)
        created = self.created.get(request.match_info["ref"])
        if created is None:
            return web.json_response({"errors": [{"code": "NOT_FOUND"}]}, status=404)
        return web.json_response({"digest": request.match_info["ref"], "extra_attrs": {"created": created}})


@pytest.fixture
async def harbor(aiohttp_server: Any) -> tuple[FakeHarbor, str]:
    fake = FakeHarbor()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


async def test_newest_build_keeps_the_newer_build_when_an_older_one_is_pushed_later(
    emu: ArgoEmulator,
    kube_config: client.Configuration,
    gitops_settings: Settings,
    sync_redis: redis.Redis,
    harbor: tuple[FakeHarbor, str],
) -> None:
    fake, url = harbor
    settings = gitops_settings.model_copy(
        update={"harbor_api_url": url, "harbor_api_credentials": SecretStr("robot$broker:s3cret")}
    )
    app = classic_app("demo", "hello", write_back="argocd", strategy="newest-build", tag="main", params=[])
    seed_all(emu, app)
    gitops = make_gitops(settings, sync_redis, kube_config, app)

    async def push(tag: str, digest: str, at: int) -> Any:
        event = harbor_event("demo", "hello", tag, digest=digest, occur_at=at)
        outcome = await asyncio.to_thread(gitops.process, event)
        await emu.change(APPS, APP, {"operation": None})
        return outcome

    first = await push("build-20", NEW, 100)
    assert helm_params(emu, APP)["image.tag"] == "build-20"
    assert [a.decision for a in first.actions if a.kind == "build-time"] == [
        "built 2026-11-20 10:00:00 UTC (Harbor)"
    ]
    retag = await push("rebuilt", OLD, 200)  # pushed later, built three weeks earlier
    assert helm_params(emu, APP)["image.tag"] == "build-20"
    assert "older build than the one deployed (would downgrade)" in retag.reason
    path, auth = fake.requests[-1]
    assert path == f"/api/v2.0/projects/team-demo/repositories/hello/artifacts/{OLD}"
    assert auth == "Basic cm9ib3QkYnJva2VyOnMzY3JldA=="  # robot$broker:s3cret

    fake.down = True  # Harbor cannot say: push time decides, and the log says so
    third = "sha256:" + "3" * 64
    fallback = await push("build-21", third, 300)
    assert helm_params(emu, APP)["image.tag"] == "build-21"
    [note] = [a.decision for a in fallback.actions if a.kind == "build-time"]
    assert note.startswith("build time unknown (Harbor API answered 500") and note.endswith(
        "orders by push time"
    )


def test_without_harbor_api_settings_no_lookup_is_made(gitops_settings: Settings) -> None:
    from broker.gitops.runner import harbor_api

    assert harbor_api(gitops_settings) is None
    assert (
        harbor_api(gitops_settings.model_copy(update={"harbor_api_url": "https://harbor.example.com"}))
        is None
    )


def test_artifact_paths_and_build_times() -> None:
    assert artifact_path("harbor.example.com/team-demo/sub/hello", OLD) == (
        f"/api/v2.0/projects/team-demo/repositories/sub%252Fhello/artifacts/{OLD}"
    )
    with pytest.raises(HarborUnavailable):
        artifact_path("harbor.example.com/hello", OLD)
    assert parse_created("2026-11-01T10:00:00.123456789Z") == parse_created("2026-11-01T10:00:00.123456Z")
    assert parse_created("2026-11-01T11:00:00+01:00") == parse_created("2026-11-01T10:00:00Z")
    with pytest.raises(ValueError):
        parse_created("2026-11-01T10:00:00")

"""The ops JSON endpoints (/api/v1/ops/me, /api/v1/ops/health) and how /ui is served."""

from __future__ import annotations

import re
from pathlib import Path

from rq import Queue, SimpleWorker

from broker.api.ui import UI_DIR
from broker.app import create_app
from broker.team_tokens import TOKEN_KEY, token_digest
from tests import payloads
from tests.conftest import GITEA_SECRET, admin_headers
from tests.signing import gitea_headers

TEAM = {"Authorization": "Bearer demo-token"}


def team_token(sync_redis, token: str = "demo-token", team: str = "demo") -> None:
    sync_redis.hset(TOKEN_KEY.format(digest=token_digest(token)), mapping={"team": team})


async def post_push(client, owner: str, seed: str) -> str:
    body = payloads.gitea_push(owner=owner, after=payloads.fake_sha(seed))
    resp = await client.post("/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET))
    return (await resp.json())["event_id"]


async def test_me_names_the_principal(client, sync_redis):
    team_token(sync_redis)
    assert await (await client.get("/api/v1/ops/me", headers=admin_headers())).json() == {
        "admin": True,
        "team": None,
    }
    assert await (await client.get("/api/v1/ops/me", headers=TEAM)).json() == {"admin": False, "team": "demo"}
    assert (await client.get("/api/v1/ops/me")).status == 401
    assert (await client.get("/api/v1/ops/me", headers={"Authorization": "Bearer nope"})).status == 401


async def test_health_reports_queues_workers_and_counts(client, settings, sync_redis):
    await post_push(client, "team-demo", "a")
    await post_push(client, "team-demo", "b")
    await post_push(client, "team-other", "c")
    queue = Queue(settings.queue_name, connection=sync_redis)
    worker = SimpleWorker([queue], connection=sync_redis, name="ops-test-worker")
    worker.register_birth()
    try:
        health = await (await client.get("/api/v1/ops/health", headers=admin_headers())).json()
    finally:
        worker.register_death()
    assert health["redis"]["ok"] is True
    broker_queue = next(q for q in health["queues"] if q["name"] == settings.queue_name)
    assert broker_queue["depth"] == 3 and broker_queue["oldest_age_s"] >= 0
    assert {q["name"] for q in health["queues"]} == {settings.queue_name, settings.notify_queue_name}
    [listed] = health["workers"]
    assert listed["name"] == "ops-test-worker"
    assert listed["queues"] == [settings.queue_name]
    assert listed["pid"] and listed["hostname"] and listed["heartbeat_age_s"] < 60
    assert health["events"] == {
        "by_status": {"queued": 3, "processing": 0, "done": 0, "ignored": 0, "failed": 0, "dead": 0},
        "total": 3,
    }
    assert health["scope"] == {"admin": True, "team": None}

    after = await (await client.get("/api/v1/ops/health", headers=admin_headers())).json()
    assert after["workers"] == []  # a worker that said goodbye is not listed


async def test_health_counts_are_scoped_to_the_team(client, sync_redis):
    team_token(sync_redis)
    await post_push(client, "team-demo", "a")
    await post_push(client, "team-other", "b")
    await post_push(client, "team-other", "c")
    health = await (await client.get("/api/v1/ops/health", headers=TEAM)).json()
    assert health["events"]["total"] == 1
    assert health["events"]["by_status"]["queued"] == 1
    assert health["scope"] == {"admin": False, "team": "demo"}
    assert sync_redis.keys("broker:ops:scratch:*") == []  # the scratch intersections are cleaned up
    assert (await client.get("/api/v1/ops/health")).status == 401


async def test_health_says_when_redis_is_down(aiohttp_client, settings, tmp_path):
    unreachable = {"redis_url": "redis://127.0.0.1:1/0", "spool_max_bytes": 0, "data_dir": tmp_path / "down"}
    down = await aiohttp_client(create_app(settings.model_copy(update=unreachable)))
    resp = await down.get("/api/v1/ops/health", headers=admin_headers())
    assert resp.status == 503
    assert (await resp.json())["redis"]["ok"] is False


async def test_ui_is_served_with_a_strict_policy(client):
    page = await client.get("/ui")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    html = await page.text()
    for asset in re.findall(r'(?:src|href)="(/ui/[^"]+)"', html):
        resp = await client.get(asset)
        assert resp.status == 200, asset
    script = await client.get("/ui/app.js")
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert (await client.get("/ui/nope.js")).status == 404
    assert (await client.get("/ui/%2e%2e%2fsettings.py")).status == 404
    root = await client.get("/", allow_redirects=False)
    assert root.status == 302 and root.headers["Location"] == "/ui"


def test_page_scripts_never_build_html_from_strings():
    """The page's escaping rule, enforced: data reaches the DOM as text nodes and attributes only."""
    scripts = sorted(Path(UI_DIR).glob("*.js"))
    assert len(scripts) >= 5
    for script in scripts:
        source = script.read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in source, f"{script.name} uses {sink}"

"""Team tokens: ops issue, list and revoke them; they are stored hashed and shown once; only the admin
manages them; `team-<id>` and `<id>` name the same team."""

from __future__ import annotations

import hashlib

import pytest
from aiohttp import web
from rq import Queue

from broker import keys, team_tokens
from broker.api import subscriptions, teams
from broker.api.errors import error_middleware
from tests.conftest import ADMIN_TOKEN
from tests.notify_support import notify_settings

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def api(aiohttp_client, settings, async_redis, sync_redis):
    app = web.Application(middlewares=[error_middleware])
    app[keys.SETTINGS] = notify_settings(settings)
    app[keys.REDIS] = async_redis
    app[keys.QUEUE] = Queue(settings.queue_name, connection=sync_redis)
    app.add_routes(teams.routes)
    app.add_routes(subscriptions.routes)
    return await aiohttp_client(app)


async def test_issue_list_use_and_revoke(api):
    resp = await api.post("/api/v1/teams/team-demo/tokens", json={"name": "ci"}, headers=ADMIN)
    assert resp.status == 201
    issued = await resp.json()
    assert issued["team"] == "demo" and issued["name"] == "ci"
    token = issued["token"]
    assert token.startswith("bkt_") and len(token) > 40 and token.startswith(issued["prefix"])

    listing = await (await api.get("/api/v1/teams/demo/tokens", headers=ADMIN)).json()
    assert [t["id"] for t in listing["items"]] == [issued["id"]]
    assert "token" not in listing["items"][0] and token not in str(listing)  # shown once, at creation

    assert (await api.get("/api/v1/subscriptions", headers=bearer(token))).status == 200
    resp = await api.delete(f"/api/v1/teams/team-demo/tokens/{issued['id']}", headers=ADMIN)
    assert resp.status == 204
    assert (await api.get("/api/v1/subscriptions", headers=bearer(token))).status == 401
    assert (await api.delete(f"/api/v1/teams/demo/tokens/{issued['id']}", headers=ADMIN)).status == 404
    assert (await (await api.get("/api/v1/teams/demo/tokens", headers=ADMIN)).json())["items"] == []


async def test_tokens_are_stored_hashed(api, sync_redis):
    issued = await (await api.post("/api/v1/teams/demo/tokens", headers=ADMIN)).json()
    token = issued["token"]
    digest = hashlib.sha256(token.encode()).hexdigest()
    stored = b""
    for key in sync_redis.scan_iter():
        kind = sync_redis.type(key)
        stored += key + b"\n"
        if kind == b"hash":
            stored += b"".join(k + v for k, v in sync_redis.hgetall(key).items())
        elif kind == b"string":
            stored += sync_redis.get(key) or b""
    assert token.encode() not in stored
    assert sync_redis.hget(f"broker:team-token:{digest}", "team") == b"demo"


async def test_a_revoked_token_of_one_team_is_not_found_under_another(api):
    issued = await (await api.post("/api/v1/teams/demo/tokens", headers=ADMIN)).json()
    assert (await api.delete(f"/api/v1/teams/other/tokens/{issued['id']}", headers=ADMIN)).status == 404
    assert (await api.get("/api/v1/subscriptions", headers=bearer(issued["token"]))).status == 200


async def test_only_the_admin_manages_tokens(api):
    team_token = (await (await api.post("/api/v1/teams/demo/tokens", headers=ADMIN)).json())["token"]
    for method, path in [
        ("POST", "/api/v1/teams/demo/tokens"),
        ("GET", "/api/v1/teams/demo/tokens"),
        ("DELETE", "/api/v1/teams/demo/tokens/x"),
        ("GET", "/api/v1/teams/other/tokens"),
    ]:
        assert (await api.request(method, path, headers=bearer(team_token))).status == 403
        assert (await api.request(method, path)).status == 401
        assert (await api.request(method, path, headers=bearer("bkt_wrong"))).status == 401


@pytest.mark.parametrize("team", ["Bad_Team", "team-", "-demo", "x" * 64])
async def test_invalid_team_is_a_400(api, team):
    resp = await api.post(f"/api/v1/teams/{team}/tokens", headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["error"] == "invalid team"


async def test_invalid_body_is_a_400(api):
    assert (await api.post("/api/v1/teams/demo/tokens", data=b"{", headers=ADMIN)).status == 400
    assert (await api.post("/api/v1/teams/demo/tokens", json={"name": 5}, headers=ADMIN)).status == 400


async def test_team_for_token_and_normalize(async_redis):
    issued = await team_tokens.issue(async_redis, "demo")
    assert await team_tokens.team_for_token(async_redis, issued.token) == "demo"
    assert await team_tokens.team_for_token(async_redis, issued.token + "x") is None
    assert team_tokens.normalize_team("team-demo") == team_tokens.normalize_team("Demo") == "demo"
    with pytest.raises(ValueError):
        team_tokens.normalize_team("team_demo")


async def test_routes_are_served_by_the_real_app(client):
    """create_app registers both route tables and its rq queue's connection serves the sync store."""
    resp = await client.post("/api/v1/teams/team-demo/tokens", headers=ADMIN)
    assert resp.status == 201
    team = bearer((await resp.json())["token"])
    assert (await (await client.get("/api/v1/subscriptions", headers=team)).json()) == {"items": []}
    refused = await client.post(
        "/api/v1/subscriptions", json={"target": "http://127.0.0.1:9/x"}, headers=team
    )
    assert (
        refused.status == 400 and "loopback" in (await refused.json())["detail"]
    )  # no allow-list by default

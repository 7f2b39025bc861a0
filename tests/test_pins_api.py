"""GET /api/v1/pins and DELETE /api/v1/pins/{app}/{alias} on the broker's app with real Redis: the admin
sees and unpins every pin, a team token only its team's (another team's pin is a 404 and stays put)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from broker.pins import PinStore
from handlers.rollback import Pin
from tests.conftest import admin_headers
from tests.test_ops_api import team_token

DEMO = {"Authorization": "Bearer demo-token"}
PINNED_AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def pin(app: str, alias: str, team: str | None) -> Pin:
    return Pin(
        app=app,
        alias=alias,
        team=team,
        image="registry.example.com/demo/hello",
        strategy="semver",
        applied="1.4.0",
        found="1.3.2",
        reason="rolled back from 1.4.0 to 1.3.2",
        event_id="01JPINEVENT000000000000000",
        pinned_at=PINNED_AT,
    )


def seed(sync_redis: redis.Redis) -> list[Pin]:
    store = PinStore(sync_redis)
    pins = [
        pin("team-demo-web", "web", "demo"),
        pin("team-demo-hello", "api", "demo"),
        pin("team-ops-tool", "tool", "ops"),
    ]
    return [store.add(p) for p in pins]


def as_json(p: Pin) -> dict[str, Any]:
    return {**p.model_dump(mode="json"), "key": p.key}


async def keys_of(resp: Any) -> list[str]:
    assert resp.status == 200, await resp.text()
    return [item["key"] for item in (await resp.json())["items"]]


async def test_admin_lists_every_pin_and_filters_by_team(client, sync_redis):
    made = seed(sync_redis)
    resp = await client.get("/api/v1/pins", headers=admin_headers())
    body = await resp.json()
    assert resp.status == 200
    assert body == {"items": [as_json(made[1]), as_json(made[0]), as_json(made[2])]}  # by app, alias
    assert body["items"][0]["key"] == "team-demo-hello/api"
    assert body["items"][0]["pinned_at"] == "2026-03-01T09:30:00Z"
    assert await keys_of(await client.get("/api/v1/pins?team=ops", headers=admin_headers())) == [
        "team-ops-tool/tool"
    ]
    assert await keys_of(await client.get("/api/v1/pins?team=team-demo", headers=admin_headers())) == [
        "team-demo-hello/api",
        "team-demo-web/web",
    ]
    assert await keys_of(await client.get("/api/v1/pins?team=", headers=admin_headers())) == [
        "team-demo-hello/api",
        "team-demo-web/web",
        "team-ops-tool/tool",
    ]


async def test_no_pins_is_an_empty_list(client, sync_redis):
    resp = await client.get("/api/v1/pins", headers=admin_headers())
    assert resp.status == 200 and await resp.json() == {"items": []}


async def test_a_team_token_lists_only_its_team(client, sync_redis):
    seed(sync_redis)
    team_token(sync_redis)
    assert await keys_of(await client.get("/api/v1/pins", headers=DEMO)) == [
        "team-demo-hello/api",
        "team-demo-web/web",
    ]
    assert await keys_of(await client.get("/api/v1/pins?team=team-demo", headers=DEMO)) == [
        "team-demo-hello/api",
        "team-demo-web/web",
    ]
    other = await client.get("/api/v1/pins?team=ops", headers=DEMO)
    assert other.status == 403
    assert await other.json() == {"error": "a team token can only read its own team's pins"}


async def test_admin_unpins_and_a_second_unpin_is_404(client, sync_redis, caplog):
    made = seed(sync_redis)
    with caplog.at_level(logging.INFO, logger="broker.api.pins"):
        resp = await client.delete("/api/v1/pins/team-ops-tool/tool", headers=admin_headers())
    assert resp.status == 200
    assert await resp.json() == {"unpinned": as_json(made[2])}
    assert PinStore(sync_redis).get("team-ops-tool", "tool") is None
    assert PinStore(sync_redis).get("team-demo-web", "web") == made[0]
    [line] = [r.getMessage() for r in caplog.records if r.name == "broker.api.pins"]
    assert line.startswith("the admin unpinned team-ops-tool/tool (team ops")
    assert "admin-test-token" not in line

    again = await client.delete("/api/v1/pins/team-ops-tool/tool", headers=admin_headers())
    assert again.status == 404 and await again.json() == {"error": "no such pin"}


async def test_a_team_token_cannot_unpin_another_teams_pin(client, sync_redis):
    made = seed(sync_redis)
    team_token(sync_redis)
    resp = await client.delete("/api/v1/pins/team-ops-tool/tool", headers=DEMO)
    assert resp.status == 404 and await resp.json() == {"error": "no such pin"}  # same as a missing one
    assert PinStore(sync_redis).get("team-ops-tool", "tool") == made[2]
    missing = await client.delete("/api/v1/pins/team-ops-tool/nope", headers=DEMO)
    assert missing.status == 404 and await missing.json() == {"error": "no such pin"}


async def test_a_pin_without_a_team_is_the_admins_alone(client, sync_redis):
    orphan = PinStore(sync_redis).add(pin("no-team-app", "web", None))
    team_token(sync_redis)
    assert await keys_of(await client.get("/api/v1/pins", headers=DEMO)) == []
    assert (await client.delete("/api/v1/pins/no-team-app/web", headers=DEMO)).status == 404
    assert PinStore(sync_redis).get("no-team-app", "web") == orphan
    resp = await client.delete("/api/v1/pins/no-team-app/web", headers=admin_headers())
    assert resp.status == 200 and (await resp.json())["unpinned"]["team"] is None


async def test_a_team_token_unpins_its_own(client, sync_redis, caplog):
    made = seed(sync_redis)
    team_token(sync_redis)
    with caplog.at_level(logging.INFO, logger="broker.api.pins"):
        resp = await client.delete("/api/v1/pins/team-demo-web/web", headers=DEMO)
    assert resp.status == 200 and await resp.json() == {"unpinned": as_json(made[0])}
    assert PinStore(sync_redis).get("team-demo-web", "web") is None
    assert await keys_of(await client.get("/api/v1/pins", headers=DEMO)) == ["team-demo-hello/api"]
    messages = [r.getMessage() for r in caplog.records if r.name == "broker.api.pins"]
    assert messages == [
        "team demo unpinned team-demo-web/web (team demo; pinned for: " + made[0].reason + ")"
    ]
    assert all("demo-token" not in m for m in messages)


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/v1/pins"), ("DELETE", "/api/v1/pins/team-demo-web/web")]
)
async def test_unauthenticated_calls_are_401_and_change_nothing(client, sync_redis, method, path):
    made = seed(sync_redis)
    missing = await client.request(method, path)
    assert missing.status == 401 and await missing.json() == {"error": "missing bearer token"}
    wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401 and await wrong.json() == {"error": "invalid bearer token"}
    assert PinStore(sync_redis).get("team-demo-web", "web") == made[0]

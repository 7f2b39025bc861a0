"""GET /api/v1/deployments and /api/v1/deployments/{id} on a tiny app with real Redis: newest first,
filters, cursor paging, and team scoping (another team's record is a 404, never a leak)."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
from aiohttp import web

from broker import keys
from broker.api.deployments import routes
from broker.api.errors import error_middleware
from broker.deployments import AppRollout, Deployment, DeploymentStore, new_id
from broker.settings import Settings
from broker.team_tokens import issue
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def client_for(aiohttp_client: Any, settings: Settings, async_redis: aredis.Redis) -> Any:
    app = web.Application(middlewares=[error_middleware])
    app[keys.SETTINGS] = settings
    app[keys.REDIS] = async_redis
    app.add_routes(routes)
    return await aiohttp_client(app)


def seed(sync_redis: redis.Redis) -> list[Deployment]:
    store = DeploymentStore(sync_redis, ttl_s=600)
    made = []
    for team, app in [
        ("demo", "team-demo-hello"),
        ("demo", "team-demo-web"),
        ("ops", "team-ops-tool"),
        ("demo", "team-demo-hello"),
    ]:
        deployment = Deployment(
            id=new_id(), team=team, commit="a" * 40, apps={app: AppRollout(app=app, status="succeeded")}
        )
        made.append(store.create(deployment, event_id=new_id()))
    return made


async def test_admin_lists_newest_first_with_filters_and_cursor(
    aiohttp_client: Any, settings: Settings, async_redis: aredis.Redis, sync_redis: redis.Redis
) -> None:
    made = seed(sync_redis)
    client = await client_for(aiohttp_client, settings, async_redis)
    everything = await (await client.get("/api/v1/deployments", headers=ADMIN)).json()
    assert [d["id"] for d in everything["items"]] == [d.id for d in reversed(made)] and everything[
        "next_cursor"
    ] is None
    page = await (await client.get("/api/v1/deployments?limit=2", headers=ADMIN)).json()
    assert [d["id"] for d in page["items"]] == [made[3].id, made[2].id] and page["next_cursor"] == made[2].id
    rest = await (
        await client.get(f"/api/v1/deployments?limit=2&cursor={page['next_cursor']}", headers=ADMIN)
    ).json()
    assert [d["id"] for d in rest["items"]] == [made[1].id, made[0].id] and rest["next_cursor"] is None
    hello = await (await client.get("/api/v1/deployments?app=team-demo-hello", headers=ADMIN)).json()
    assert [d["id"] for d in hello["items"]] == [made[3].id, made[0].id]
    ops = await (await client.get("/api/v1/deployments?team=team-ops", headers=ADMIN)).json()
    assert [d["id"] for d in ops["items"]] == [made[2].id]
    one = await client.get(f"/api/v1/deployments/{made[2].id}", headers=ADMIN)
    body = await one.json()
    assert (
        one.status == 200 and body["apps"]["team-ops-tool"]["status"] == "succeeded" and body["team"] == "ops"
    )


async def test_team_tokens_see_only_their_team(
    aiohttp_client: Any, settings: Settings, async_redis: aredis.Redis, sync_redis: redis.Redis
) -> None:
    made = seed(sync_redis)
    client = await client_for(aiohttp_client, settings, async_redis)
    token = (await issue(async_redis, "demo")).token
    demo = {"Authorization": f"Bearer {token}"}
    listing = await (await client.get("/api/v1/deployments", headers=demo)).json()
    assert {d["team"] for d in listing["items"]} == {"demo"} and len(listing["items"]) == 3
    by_app = await (await client.get("/api/v1/deployments?app=team-ops-tool", headers=demo)).json()
    assert by_app["items"] == []
    other = await client.get(f"/api/v1/deployments/{made[2].id}", headers=demo)
    assert other.status == 404 and await other.json() == {"error": "no such deployment"}
    own = await client.get(f"/api/v1/deployments/{made[0].id}", headers=demo)
    assert own.status == 200
    forbidden = await client.get("/api/v1/deployments?team=ops", headers=demo)
    assert forbidden.status == 403
    assert (await client.get("/api/v1/deployments")).status == 401
    assert (await client.get("/api/v1/deployments", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await client.get("/api/v1/deployments/nope", headers=ADMIN)).status == 404
    assert (await client.get("/api/v1/deployments?limit=0", headers=ADMIN)).status == 400


async def test_expired_records_drop_out_of_the_index(
    aiohttp_client: Any, settings: Settings, async_redis: aredis.Redis, sync_redis: redis.Redis
) -> None:
    made = seed(sync_redis)
    sync_redis.delete(f"broker:deployment:{made[3].id}")  # retention expired it
    client = await client_for(aiohttp_client, settings, async_redis)
    listing = await (await client.get("/api/v1/deployments?limit=1", headers=ADMIN)).json()
    assert [d["id"] for d in listing["items"]] == [made[2].id] and listing["next_cursor"] == made[2].id
    assert sync_redis.zscore("broker:deployment:index", made[3].id) is None

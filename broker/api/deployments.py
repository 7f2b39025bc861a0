"""Deployment records: commit -> build -> image -> write-back -> sync -> health, per rollout.
`GET /api/v1/deployments?team=&app=&limit=&cursor=` (newest first) and `GET /api/v1/deployments/{id}`.
A team token sees only its team's records; another team's record answers 404, like a missing one."""

from __future__ import annotations

from aiohttp import web

from broker import keys
from broker.api.auth import authenticate
from broker.api.errors import json_error
from broker.api.events import normalise_team, parse_limit
from broker.deployments import aget, alist

routes = web.RouteTableDef()


@routes.get("/api/v1/deployments")
async def list_deployments(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    team = principal.scope(normalise_team(request.query.get("team")), "deployments")
    items, cursor = await alist(
        request.app[keys.REDIS],
        team=team,
        app=request.query.get("app") or None,
        limit=parse_limit(request.query.get("limit")),
        cursor=request.query.get("cursor") or None,
    )
    return web.json_response({"items": [d.model_dump(mode="json") for d in items], "next_cursor": cursor})


@routes.get("/api/v1/deployments/{deployment_id}")
async def get_deployment(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    deployment = await aget(request.app[keys.REDIS], request.match_info["deployment_id"])
    if deployment is None or not principal.can_see(deployment.team):
        raise json_error(web.HTTPNotFound, "no such deployment")
    return web.json_response(deployment.model_dump(mode="json"))

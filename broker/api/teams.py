"""Team tokens, for ops only: `POST/GET /api/v1/teams/{team}/tokens`, `DELETE .../tokens/{token_id}`.
The token is in the answer to the POST and nowhere else, ever."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from broker import keys, team_tokens
from broker.api.auth import require_admin
from broker.api.errors import json_error

routes = web.RouteTableDef()

MAX_NAME = 200


def _team(request: web.Request) -> str:
    try:
        return team_tokens.normalize_team(request.match_info["team"])
    except ValueError as exc:
        raise json_error(web.HTTPBadRequest, "invalid team", str(exc)) from None


async def _name(request: web.Request) -> str:
    if not request.can_read_body:
        return ""
    try:
        body: Any = json.loads(await request.read() or b"{}")
    except ValueError:
        raise json_error(web.HTTPBadRequest, "body is not JSON") from None
    name = body.get("name", "") if isinstance(body, dict) else None
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise json_error(
            web.HTTPBadRequest, "invalid body", f"optional 'name': a string of at most {MAX_NAME}"
        )
    return name


@routes.post("/api/v1/teams/{team}/tokens")
async def issue_token(request: web.Request) -> web.Response:
    await require_admin(request)
    team = _team(request)
    issued = await team_tokens.issue(request.app[keys.REDIS], team, await _name(request))
    return web.json_response(issued.model_dump(mode="json"), status=201)


@routes.get("/api/v1/teams/{team}/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    await require_admin(request)
    tokens = await team_tokens.list_tokens(request.app[keys.REDIS], _team(request))
    return web.json_response({"items": [t.model_dump(mode="json") for t in tokens]})


@routes.delete("/api/v1/teams/{team}/tokens/{token_id}")
async def revoke_token(request: web.Request) -> web.Response:
    await require_admin(request)
    if not await team_tokens.revoke(request.app[keys.REDIS], _team(request), request.match_info["token_id"]):
        raise json_error(web.HTTPNotFound, "no such token for this team")
    return web.Response(status=204)

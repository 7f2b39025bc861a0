"""Rollback pins (broker/pins.py): images a worker stopped updating after finding them rolled back by hand.
`GET /api/v1/pins?team=` lists them by Application and alias; `DELETE /api/v1/pins/{app}/{alias}` unpins
one, so that the next push updates the image again. A team token sees and unpins only its team's pins;
another team's pin answers 404, like a missing one."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from broker import keys
from broker.api.auth import Principal, authenticate
from broker.api.errors import json_error
from broker.api.events import normalise_team
from broker.pins import aget, alist, aremove
from handlers.rollback import Pin

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def pin_json(pin: Pin) -> dict[str, Any]:
    return {**pin.model_dump(mode="json"), "key": pin.key}


def _who(principal: Principal) -> str:
    return "the admin" if principal.is_admin else f"team {principal.team}"


@routes.get("/api/v1/pins")
async def list_pins(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    team = principal.scope(normalise_team(request.query.get("team")), "pins")
    pins = await alist(request.app[keys.REDIS], team=team)
    return web.json_response({"items": [pin_json(p) for p in pins]})


@routes.delete("/api/v1/pins/{app}/{alias}")
async def unpin(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    app, alias = request.match_info["app"], request.match_info["alias"]
    client = request.app[keys.REDIS]
    # Checked before removing: a team token must neither remove nor learn of another team's pin.
    found = await aget(client, app, alias)
    if found is None or not principal.can_see(found.team):
        raise json_error(web.HTTPNotFound, "no such pin")
    removed = await aremove(client, app, alias)
    if removed is None:  # a worker cleared it in between (the workload rolled forward)
        raise json_error(web.HTTPNotFound, "no such pin")
    log.info(
        "%s unpinned %s (team %s; pinned for: %s)",
        _who(principal),
        removed.key,
        removed.team or "-",
        removed.reason,
    )
    return web.json_response({"unpinned": pin_json(removed)})

"""Team subscriptions: `POST/GET /api/v1/subscriptions`, `GET/PATCH/DELETE /api/v1/subscriptions/{id}`,
`POST .../{id}/rotate-secret`, `GET .../{id}/deliveries[/{delivery_id}]`,
`POST .../{id}/deliveries/{delivery_id}/replay`.

A team token sees and changes only its own team's subscriptions: anything else answers 404, as if it
did not exist. The admin token manages every team's, naming the team in the body on create.
The store is synchronous (it is shared with the rq delivery job): handlers run it in a thread, on the
sync Redis connection of the app's rq queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from aiohttp import web
from pydantic import BaseModel, ValidationError

from broker import keys
from broker.api.auth import Principal, authenticate
from broker.api.errors import json_error
from broker.notify import service
from broker.notify.config import NotifyConfig
from broker.notify.models import Subscription, SubscriptionIn, SubscriptionPatch
from broker.notify.store import NotifyStore
from broker.team_tokens import normalize_team

routes = web.RouteTableDef()

BASE = "/api/v1/subscriptions"
MAX_PAGE = 200
STATUSES = {"pending", "retrying", "succeeded", "dead"}
T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)


def _config(request: web.Request) -> NotifyConfig:
    return NotifyConfig.from_settings(request.app[keys.SETTINGS])


def _store(request: web.Request) -> NotifyStore:
    connection: redis.Redis = request.app[keys.QUEUE].connection
    return NotifyStore(connection, _config(request).delivery_ttl_s)


async def _run(fn: Callable[..., T], *args: Any) -> T:
    """Run a store/service call off the event loop and map its errors to JSON answers."""
    try:
        return await asyncio.to_thread(fn, *args)
    except service.InvalidTarget as exc:
        raise json_error(web.HTTPBadRequest, "invalid target", str(exc)) from None
    except service.NotFound as exc:
        raise json_error(web.HTTPNotFound, str(exc)) from None
    except service.Conflict as exc:
        raise json_error(web.HTTPConflict, str(exc)) from None


async def _body(request: web.Request, model: type[B]) -> B:
    try:
        raw = json.loads(await request.read())
    except ValueError:
        raise json_error(web.HTTPBadRequest, "body is not JSON") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        detail = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise json_error(web.HTTPBadRequest, "invalid subscription", detail) from None


async def _visible(request: web.Request, principal: Principal) -> Subscription:
    """The subscription in the URL if this caller may see it; 404 otherwise (never 403: a team must not
    learn that another team's subscription id exists)."""
    sub = await _run(_store(request).subscription, request.match_info["sub_id"])
    if sub is None or not principal.can_see(sub.team):
        raise json_error(web.HTTPNotFound, "no such subscription")
    return sub


async def _view(request: web.Request, sub: Subscription, **extra: Any) -> dict[str, Any]:
    health = await _run(_store(request).health, sub.id)
    return {**service.view(sub, health), **extra}


def _team_for_create(principal: Principal, requested: str | None) -> str:
    if requested is None:
        if principal.team is None:
            raise json_error(web.HTTPBadRequest, "invalid subscription", "the admin must name the 'team'")
        return principal.team
    try:
        team = normalize_team(requested)
    except ValueError as exc:
        raise json_error(web.HTTPBadRequest, "invalid subscription", str(exc)) from None
    if not principal.can_see(team):
        raise json_error(web.HTTPForbidden, "a team token can only subscribe for its own team")
    return team


@routes.post(BASE)
async def create_subscription(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await _body(request, SubscriptionIn)
    team = _team_for_create(principal, body.team)
    sub, secret = await _run(service.create, _store(request), _config(request), team, body)
    extra = {"secret": secret} if secret else {}
    return web.json_response(await _view(request, sub, **extra), status=201)


@routes.get(BASE)
async def list_subscriptions(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    team: str | None = principal.team
    if "team" in request.query:
        try:
            team = normalize_team(request.query["team"])
        except ValueError as exc:
            raise json_error(web.HTTPBadRequest, "invalid team", str(exc)) from None
        if not principal.can_see(team):
            raise json_error(web.HTTPForbidden, "a team token only sees its own team")
    store = _store(request)
    subs = await _run(store.subscriptions, team)
    return web.json_response({"items": [await _view(request, sub) for sub in subs]})


@routes.get(BASE + "/{sub_id}")
async def get_subscription(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    return web.json_response(await _view(request, sub))


@routes.patch(BASE + "/{sub_id}")
async def patch_subscription(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    patch = await _body(request, SubscriptionPatch)
    updated, secret = await _run(service.update, _store(request), _config(request), sub, patch)
    extra = {"secret": secret} if secret else {}
    return web.json_response(await _view(request, updated, **extra))


@routes.delete(BASE + "/{sub_id}")
async def delete_subscription(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    await _run(_store(request).delete_subscription, sub)
    return web.Response(status=204)


@routes.post(BASE + "/{sub_id}/rotate-secret")
async def rotate_secret(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    updated, secret = await _run(service.rotate_secret, _store(request), _config(request), sub)
    return web.json_response(await _view(request, updated, secret=secret))


@routes.get(BASE + "/{sub_id}/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise json_error(web.HTTPBadRequest, "invalid status", f"one of {sorted(STATUSES)}")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise json_error(web.HTTPBadRequest, "invalid limit", f"an integer from 1 to {MAX_PAGE}")
    store = _store(request)

    def page() -> dict[str, Any]:
        found, cursor = store.deliveries(
            sub.id, status=status, limit=limit, cursor=request.query.get("cursor")
        )
        return {"items": [service.delivery_view(store, d) for d in found], "next_cursor": cursor}

    return web.json_response(await _run(page))


@routes.get(BASE + "/{sub_id}/deliveries/{delivery_id}")
async def get_delivery(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    store = _store(request)
    delivery = await _run(store.delivery, request.match_info["delivery_id"])
    if delivery is None or delivery.subscription_id != sub.id:
        raise json_error(web.HTTPNotFound, "no such delivery for this subscription")
    return web.json_response(await _run(lambda: service.delivery_view(store, delivery, detail=True)))


@routes.post(BASE + "/{sub_id}/deliveries/{delivery_id}/replay")
async def replay_delivery(request: web.Request) -> web.Response:
    sub = await _visible(request, await authenticate(request))
    store = _store(request)
    replayed = await _run(service.replay, store, _config(request), sub, request.match_info["delivery_id"])
    return web.json_response(await _run(service.delivery_view, store, replayed), status=202)

"""The event log API: list with filters and cursor, one event, replay, and the SSE live tail.
A team principal sees only its own team's events, here and in the stream."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from broker import keys
from broker.api.auth import Principal, authenticate
from broker.api.errors import json_error
from broker.store import EventFilter
from handlers.models import Event

routes = web.RouteTableDef()

MAX_LIMIT = 500


def normalise_team(team: str | None) -> str | None:
    if team and team.startswith("team-"):
        return team[len("team-") :]
    return team or None


def parse_filter(query: dict[str, str] | web.Request, principal: Principal) -> EventFilter:
    params = query.query if isinstance(query, web.Request) else query
    team = principal.scope(normalise_team(params.get("team")), "events")
    since = None
    if params.get("since"):
        try:
            since = datetime.fromisoformat(params["since"].replace("Z", "+00:00"))
        except ValueError:
            raise json_error(web.HTTPBadRequest, "since must be an ISO 8601 timestamp") from None
        if since.tzinfo is None:
            raise json_error(web.HTTPBadRequest, "since needs a timezone, e.g. 2026-11-27T10:00:00Z")
    return EventFilter(
        source=params.get("source") or None,
        type=params.get("type") or None,
        team=team,
        repo=params.get("repo") or None,
        status=params.get("status") or None,
        since=since,
    )


def parse_limit(raw: str | None, default: int = 50) -> int:
    try:
        limit = int(raw) if raw else default
    except ValueError:
        raise json_error(web.HTTPBadRequest, "limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise json_error(web.HTTPBadRequest, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def event_json(event: Event) -> dict[str, object]:
    return event.model_dump(mode="json")


async def visible_event(request: web.Request, principal: Principal) -> Event:
    event = await request.app[keys.STORE].get(request.match_info["event_id"])
    # Another team's event answers exactly like a missing one.
    if event is None or not principal.can_see(event.team):
        raise json_error(web.HTTPNotFound, "no such event")
    return event


@routes.get("/api/v1/events")
async def list_events(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    filters = parse_filter(request, principal)
    page = await request.app[keys.STORE].query(
        filters, limit=parse_limit(request.query.get("limit")), cursor=request.query.get("cursor") or None
    )
    return web.json_response(
        {
            "items": [e.model_dump(mode="json", exclude={"payload"}) for e in page.items],
            "next_cursor": page.next_cursor,
        }
    )


@routes.get(r"/api/v1/events/{event_id:[0-9A-Za-z]{26}}")
async def get_event(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return web.json_response(event_json(await visible_event(request, principal)))


@routes.post(r"/api/v1/events/{event_id:[0-9A-Za-z]{26}}/replay")
async def replay_event(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    event = await visible_event(request, principal)
    if event.status in ("queued", "processing"):
        raise json_error(web.HTTPConflict, f"event is {event.status}; replay it once it has finished")
    replayed = await request.app[keys.STORE].replay(event)
    return web.json_response({"event_id": replayed.id, "status": replayed.status}, status=202)

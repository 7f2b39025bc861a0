"""Who is calling the ops and team APIs: the admin (BROKER_ADMIN_TOKEN) or one team (a team token).
A team principal only ever sees its own team's data; every API filters through `Principal.can_see`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from broker import keys
from broker.api.errors import json_error
from broker.team_tokens import team_for_token


@dataclass(frozen=True)
class Principal:
    team: str | None  # None: the admin, who sees every team

    @property
    def is_admin(self) -> bool:
        return self.team is None

    def can_see(self, team: str | None) -> bool:
        return self.is_admin or (team is not None and team == self.team)

    def scope(self, team: str | None, what: str) -> str | None:
        """The team a listing of `what` covers: the one asked for (None: all) for the admin, a team's own
        for its token, which gets a 403 JSON error for asking after another team's."""
        if self.is_admin:
            return team
        if team is not None and team != self.team:
            raise json_error(web.HTTPForbidden, f"a team token can only read its own team's {what}")
        return self.team


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # EventSource cannot set headers, so the live page passes the token as a query parameter.
    return request.query.get("access_token") or None


async def authenticate(request: web.Request) -> Principal:
    """The caller's principal, or a 401 JSON error."""
    token = bearer_token(request)
    if token is None:
        raise json_error(web.HTTPUnauthorized, "missing bearer token")
    admin = request.app[keys.SETTINGS].admin_token
    if admin and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return Principal(team=None)
    team = await team_for_token(request.app[keys.REDIS], token)
    if team is None:
        raise json_error(web.HTTPUnauthorized, "invalid bearer token")
    return Principal(team=team)


async def require_admin(request: web.Request) -> Principal:
    principal = await authenticate(request)
    if not principal.is_admin:
        raise json_error(web.HTTPForbidden, "this endpoint needs the admin token")
    return principal

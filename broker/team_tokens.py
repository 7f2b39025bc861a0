"""Per-team bearer tokens, stored hashed: Redis holds sha256(token) -> team, never the token itself.

A token is shown once, when ops issue it. Each token has an id (for listing and revoking) and a short
prefix of the token, so an operator can tell which one a team is using without seeing it."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime

import redis.asyncio as aredis
from pydantic import BaseModel
from ulid import ULID

TOKEN_KEY = "broker:team-token:{digest}"  # hash: team, id (the lookup on every API call)
TEAM_TOKENS_KEY = "broker:team-tokens:{team}"  # hash: token id -> JSON TokenInfo (with the digest)
TOKEN_PREFIX = "bkt_"
SHOWN_PREFIX_CHARS = 8
_TEAM_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class TokenInfo(BaseModel):
    id: str
    team: str
    name: str = ""
    prefix: str  # the first characters of the token, enough to recognise it
    created_at: datetime


class IssuedToken(TokenInfo):
    token: str  # only ever in the answer to the issuing request


def normalize_team(raw: str) -> str:
    """Teams are keyed by their id: `team-demo` and `demo` both mean `demo`. Raises ValueError for a
    name that cannot be a team (Kubernetes namespace rules)."""
    team = raw.strip().lower()
    if team.startswith("team-") and len(team) > len("team-"):
        team = team[len("team-") :]
    if not _TEAM_RE.match(team):
        raise ValueError(f"{raw!r} is not a team id (lowercase letters, digits and '-', at most 63)")
    return team


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def team_for_token(redis: aredis.Redis, token: str) -> str | None:
    """The team a bearer token belongs to, or None when it is unknown or revoked."""
    raw = await redis.hget(TOKEN_KEY.format(digest=token_digest(token)), "team")
    if not raw:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def issue(redis: aredis.Redis, team: str, name: str = "") -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = token_digest(token)
    info = TokenInfo(
        id=str(ULID()), team=team, name=name, prefix=token[: len(TOKEN_PREFIX) + SHOWN_PREFIX_CHARS],
        created_at=datetime.now(UTC),
    )  # fmt: skip
    stored = {**info.model_dump(mode="json"), "digest": digest}
    async with redis.pipeline() as pipe:
        pipe.hset(TOKEN_KEY.format(digest=digest), mapping={"team": team, "id": info.id})
        pipe.hset(TEAM_TOKENS_KEY.format(team=team), info.id, json.dumps(stored))
        await pipe.execute()
    return IssuedToken(**info.model_dump(), token=token)


async def list_tokens(redis: aredis.Redis, team: str) -> list[TokenInfo]:
    raws = await redis.hvals(TEAM_TOKENS_KEY.format(team=team))
    tokens = [TokenInfo.model_validate_json(raw) for raw in raws]
    return sorted(tokens, key=lambda t: t.id)


async def revoke(redis: aredis.Redis, team: str, token_id: str) -> bool:
    """Revoke one of `team`'s tokens by id; False when the team has no such token."""
    key = TEAM_TOKENS_KEY.format(team=team)
    raw = await redis.hget(key, token_id)
    if raw is None:
        return False
    digest = json.loads(raw)["digest"]
    async with redis.pipeline() as pipe:
        pipe.delete(TOKEN_KEY.format(digest=digest))
        pipe.hdel(key, token_id)
        await pipe.execute()
    return True

"""Deployment records: one per rollout, linking commit (Gitea push) -> build (Drone) -> image (Harbor) ->
write-back -> sync -> health, per Application. This module owns every `broker:deployment:` key. Workers
write through `DeploymentStore` (sync Redis, optimistic transactions); the API reads with the async
helpers at the bottom."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aredis
from pydantic import BaseModel, Field
from redis.exceptions import WatchError
from ulid import ULID

from handlers.models import BuildInfo

PREFIX = "broker:deployment:"
RECORD_KEY = PREFIX + "{id}"
INDEX_ALL = PREFIX + "index"  # zset, score 0, members = ids (ULIDs sort by time)
INDEX_TEAM = PREFIX + "index:team:{team}"
INDEX_APP = PREFIX + "index:app:{app}"
COMMITS = PREFIX + "commits"  # zset, score 0, members "<sha>:<id>" for prefix search
TAG_KEY = PREFIX + "tag:{team}:{tag}"  # a tag build's tag -> id
EVENT_KEY = PREFIX + "event:{event}"  # which deployment an event belongs to (re-runs find it again)
_HEX = re.compile(r"^[0-9a-f]{7,64}$")

AppStatus = str  # pending | updating | syncing | succeeded | failed | degraded | unsettled | unchanged


def _now() -> datetime:
    return datetime.now(UTC)


class AppRollout(BaseModel):
    app: str
    image: str | None = None  # repository:tag@digest written
    method: str | None = None  # argocd | git
    write: str | None = None  # what the write-back did, or why not
    git_commit: str | None = None
    sync_mode: str | None = None  # sync | refresh | none
    sync_reason: str | None = None
    phase: str | None = None  # Argo CD operationState.phase
    health: str | None = None  # Argo CD health.status
    message: str | None = None
    status: AppStatus = "pending"
    updated_at: datetime = Field(default_factory=_now)


class Deployment(BaseModel):
    id: str
    team: str | None = None
    repo: str | None = None
    commit: str | None = None
    commit_message: str | None = None
    commit_url: str | None = None
    pusher: str | None = None
    ref: str | None = None
    build: BuildInfo | None = None
    image: str | None = None
    tag: str | None = None
    digest: str | None = None
    apps: dict[str, AppRollout] = Field(default_factory=dict)
    status: str = "pending"
    events: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    def fill(self, *, event_id: str | None = None, **values: Any) -> None:
        """Set the fields this record does not know yet (what it knows stays), and note the event."""
        for name, value in values.items():
            if value is not None and not getattr(self, name):
                setattr(self, name, value)
        if event_id and event_id not in self.events:
            self.events.append(event_id)

    def derive_status(self) -> str:
        if self.build and self.build.status in ("failure", "killed", "error", "declined"):
            return "build_failed"
        states = [a.status for a in self.apps.values()]
        for bad in ("failed", "degraded"):
            if bad in states:
                return bad
        for busy in ("syncing", "updating", "pending", "unsettled"):
            if busy in states:
                return busy
        if states and all(s == "unchanged" for s in states):
            return "unchanged"
        if states:
            return "succeeded"
        if self.image:
            return "image_pushed"
        if self.build and self.build.status == "success":
            return "built"
        return "committed" if self.commit else "pending"


def new_id() -> str:
    return str(ULID())


class DeploymentStore:
    def __init__(self, client: redis.Redis, *, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s

    def get(self, deployment_id: str) -> Deployment | None:
        raw = self.redis.get(RECORD_KEY.format(id=deployment_id))
        return Deployment.model_validate_json(raw) if raw else None

    def create(self, deployment: Deployment, *, event_id: str | None = None) -> Deployment:
        deployment.fill(event_id=event_id)
        deployment.status = deployment.derive_status()
        pipe = self.redis.pipeline()
        self._write(pipe, deployment)
        pipe.execute()
        return deployment

    def update(self, deployment_id: str, change: Callable[[Deployment], None]) -> Deployment | None:
        """Read-modify-write under WATCH: concurrent workers each see the other's changes."""
        key = RECORD_KEY.format(id=deployment_id)
        for _ in range(20):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if not raw:
                        return None
                    deployment = Deployment.model_validate_json(raw)
                    change(deployment)
                    deployment.status = deployment.derive_status()
                    deployment.updated_at = _now()
                    pipe.multi()
                    self._write(pipe, deployment)
                    pipe.execute()
                    return deployment
                except WatchError:
                    continue
        raise redis.RedisError(f"deployment {deployment_id} kept changing under us")

    def _write(self, pipe: Any, deployment: Deployment) -> None:
        ttl = self.ttl_s
        pipe.set(RECORD_KEY.format(id=deployment.id), deployment.model_dump_json(), ex=ttl)
        pipe.zadd(INDEX_ALL, {deployment.id: 0})
        if deployment.team:
            pipe.zadd(INDEX_TEAM.format(team=deployment.team), {deployment.id: 0})
        for app in deployment.apps:
            pipe.zadd(INDEX_APP.format(app=app), {deployment.id: 0})
        if deployment.commit:
            pipe.zadd(COMMITS, {f"{deployment.commit.lower()}:{deployment.id}": 0})
        for event_id in deployment.events:
            pipe.set(EVENT_KEY.format(event=event_id), deployment.id, ex=ttl)

    # --- finding the record an event belongs to ---------------------------------------------------

    def for_event(self, event_id: str) -> str | None:
        raw = self.redis.get(EVENT_KEY.format(event=event_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    def by_commit(self, sha_or_prefix: str | None, *, team: str | None = None) -> str | None:
        """The newest deployment whose commit starts with this hex (>= 7 chars), within a team if given."""
        text = (sha_or_prefix or "").lower()
        if not _HEX.match(text):
            return None
        members = self.redis.zrangebylex(COMMITS, f"[{text}", f"[{text}\xff", start=0, num=50)
        ids = sorted((_decode(m).rsplit(":", 1)[1] for m in members), reverse=True)
        for deployment_id in ids:
            found = self.get(deployment_id)
            if found and (team is None or found.team in (None, team)):
                return deployment_id
        return None

    def link_commit(self, sha: str, deployment_id: str) -> None:
        """Also find this deployment by another commit (e.g. the broker's own write-back commit)."""
        self.redis.zadd(COMMITS, {f"{sha.lower()}:{deployment_id}": 0})

    def link_tag(self, team: str | None, tag: str, deployment_id: str) -> None:
        self.redis.set(TAG_KEY.format(team=team or "-", tag=tag), deployment_id, ex=self.ttl_s)

    def by_tag(self, team: str | None, tag: str | None) -> str | None:
        if not tag:
            return None
        raw = self.redis.get(TAG_KEY.format(team=team or "-", tag=tag))
        return _decode(raw) if raw else None


def _decode(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


# --- async reads for the API --------------------------------------------------------------------------


async def aget(client: aredis.Redis, deployment_id: str) -> Deployment | None:
    raw = await client.get(RECORD_KEY.format(id=deployment_id))
    return Deployment.model_validate_json(raw) if raw else None


async def alist(
    client: aredis.Redis,
    *,
    team: str | None,
    app: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Deployment], str | None]:
    """Newest first. `cursor` is the last id of the previous page. Records gone by retention are
    dropped from the index on the way."""
    if app:
        index = INDEX_APP.format(app=app)
    elif team:
        index = INDEX_TEAM.format(team=team)
    else:
        index = INDEX_ALL
    items: list[Deployment] = []
    upper = f"({cursor}" if cursor else "+"
    last: str | None = None
    while len(items) < limit:
        batch = [_decode(m) for m in await client.zrevrangebylex(index, upper, "-", start=0, num=limit * 2)]
        if not batch:
            return items, None
        raws = await client.mget([RECORD_KEY.format(id=i) for i in batch])
        stale = [i for i, raw in zip(batch, raws, strict=True) if raw is None]
        if stale:
            await client.zrem(index, *stale)
        for deployment_id, raw in zip(batch, raws, strict=True):
            if raw is None:
                continue
            deployment = Deployment.model_validate_json(raw)
            if team and deployment.team != team:
                continue
            items.append(deployment)
            last = deployment_id
            if len(items) == limit:
                more = await client.zrevrangebylex(index, f"({last}", "-", start=0, num=1)
                return items, last if more else None
        upper = f"({batch[-1]}"
    return items, last

"""Drone global webhooks (WIRE-FORMATS.md §2): verify the HTTP signature, parse build events.

Drone sends `build:updated` on every step change and never retries, so only final statuses are
actionable and dedup is on (build id, status)."""

from __future__ import annotations

from collections.abc import Mapping

from handlers import drone_signature
from handlers._headers import header, pick, require_media_type
from handlers._payload import WireModel, body_sha256, load_object, validate
from handlers.models import BuildInfo, Incoming, team_id

CONTENT_TYPES: frozenset[str] = frozenset({"application/json"})
OPS_HEADERS = ("X-Drone-Event", "Date", "Digest", "Content-Type", "User-Agent")
FINAL_STATUSES: frozenset[str] = frozenset({"success", "failure", "killed", "error", "declined", "skipped"})
RUNNING_STATUSES: frozenset[str] = frozenset({"pending", "running", "blocked", "waiting_on_dependencies"})


def check_content_type(headers: Mapping[str, str]) -> None:
    require_media_type(headers, CONTENT_TYPES, "Drone")


def verify(headers: Mapping[str, str], body: bytes, secret: str, *, now: float, max_skew_s: int) -> None:
    """Raise SignatureError unless the delivery is signed with `secret`, its Digest matches `body`,
    and its Date is within ±max_skew_s of `now`."""
    drone_signature.verify_request(headers, body, secret, now=now, max_skew_s=max_skew_s)


class DroneRepo(WireModel):
    namespace: str | None = None
    name: str | None = None
    slug: str | None = None


class DroneBuild(WireModel):
    id: int
    number: int
    status: str
    link: str | None = None
    ref: str | None = None
    after: str | None = None
    event: str | None = None


class DroneWebhook(WireModel):
    event: str | None = None
    action: str | None = None
    repo: DroneRepo | None = None


class DroneBuildWebhook(DroneWebhook):
    build: DroneBuild


def _repo_fields(repo: DroneRepo | None) -> tuple[str | None, str | None]:
    """(team, slug)."""
    if repo is None:
        return None, None
    slug = repo.slug or (f"{repo.namespace}/{repo.name}" if repo.namespace and repo.name else None)
    namespace = repo.namespace or (slug.split("/", 1)[0] if slug else None)
    return team_id(namespace), slug


def _build_reason(build: DroneBuild) -> str | None:
    if build.status in FINAL_STATUSES:
        return None
    status = build.status[:40]
    if build.status in RUNNING_STATUSES:
        return f"build {build.number} still {status}: acting on final statuses only"
    return f"build {build.number} has unknown status {status!r}: acting on final statuses only"


def parse(headers: Mapping[str, str], body: bytes) -> list[Incoming]:
    payload = load_object(body, "Drone")
    event = (header(headers, "X-Drone-Event") or "").strip() or str(payload.get("event") or "")
    kept = pick(headers, OPS_HEADERS)
    if event != "build":
        hook = validate(DroneWebhook, payload, "Drone webhook")
        team, slug = _repo_fields(hook.repo)
        name = event[:100] or "unknown"
        action = f":{hook.action}" if hook.action else ""
        return [
            Incoming(
                source="drone",
                type=name,
                dedup_keys=(f"drone:{name}:body:{body_sha256(body)}",),
                team=team,
                repo=slug,
                ignore_reason=f"Drone {name}{action} event: only build events are acted on",
                headers=kept,
                payload_json=body.decode(),
            )
        ]
    hook_build = validate(DroneBuildWebhook, payload, "Drone build webhook")
    build = hook_build.build
    team, slug = _repo_fields(hook_build.repo)
    return [
        Incoming(
            source="drone",
            type="build",
            delivery_id=f"{build.id}:{build.status}",
            dedup_keys=(f"drone:build:{build.id}:{build.status}",),
            team=team,
            repo=slug,
            ref=build.ref or None,
            commit=build.after or None,
            build=BuildInfo(id=build.id, number=build.number, status=build.status, link=build.link or None),
            ignore_reason=_build_reason(build),
            headers=kept,
            payload_json=body.decode(),
        )
    ]

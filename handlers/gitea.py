"""Gitea webhooks (WIRE-FORMATS.md §1): verify the HMAC-SHA256 signature, parse push/create/delete.

Gitea signs the JSON payload bytes with no timestamp, so replays are caught by dedup keys (delivery UUID
and body hash), not here. A `form` webhook sends `payload=<urlencoded JSON>` but still signs the JSON."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import parse_qs

from handlers._headers import header, media_type, pick, require_media_type, wire_bytes
from handlers._payload import WireModel, body_sha256, load_model, load_object
from handlers.errors import PayloadError, SignatureError
from handlers.models import Incoming, team_id

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES: frozenset[str] = frozenset({JSON, FORM})
OPS_HEADERS = ("X-Gitea-Event", "X-Gitea-Event-Type", "X-Gitea-Delivery", "Content-Type", "User-Agent")
DELETED = "ref deleted: never deploys"
TEST_DELIVERY = "Gitea test delivery"


def check_content_type(headers: Mapping[str, str]) -> None:
    require_media_type(headers, CONTENT_TYPES, "Gitea")


def json_bytes(headers: Mapping[str, str], body: bytes) -> bytes:
    """The signed JSON bytes: the body itself, or the `payload` field of a form body."""
    if media_type(headers) != FORM:
        return body
    try:
        fields = parse_qs(body.decode(), strict_parsing=True, errors="strict", max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        fields = {}
    values = fields.get("payload", [])
    if len(values) != 1:
        raise PayloadError("form body must carry exactly one 'payload' field")
    return values[0].encode()


def _received_signature(headers: Mapping[str, str]) -> str:
    """The first non-empty signature header; empty when the delivery is unsigned."""
    gitea = (header(headers, "X-Gitea-Signature") or "").strip()
    if gitea:
        return gitea
    hub = (header(headers, "X-Hub-Signature-256") or "").strip()
    if hub:
        prefix, sep, value = hub.partition("=")
        if not sep or prefix.lower() != "sha256":
            raise SignatureError("X-Hub-Signature-256 must start with 'sha256='")
        if value:
            return value
    return (header(headers, "X-Gogs-Signature") or "").strip()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Raise SignatureError unless `body` carries a valid HMAC-SHA256 of its JSON under `secret`."""
    if not secret:
        raise SignatureError("no Gitea secret configured: refusing to accept deliveries")
    received = _received_signature(headers)
    if not received:
        raise SignatureError("Gitea delivery is unsigned: set the webhook secret in Gitea")
    try:
        payload = json_bytes(headers, body)
    except PayloadError as exc:
        raise SignatureError(f"cannot locate the signed payload: {exc.message}") from None
    expected = hmac.digest(secret.encode(), payload, "sha256").hex()
    if not hmac.compare_digest(expected.encode(), wire_bytes(received.lower())):
        raise SignatureError("Gitea signature does not match the body")


# --- payload models (only the fields the broker reads; everything else is ignored) ---------------------


class GiteaUser(WireModel):
    login: str | None = None
    username: str | None = None


class GiteaRepository(WireModel):
    full_name: str
    name: str | None = None
    owner: GiteaUser | None = None
    clone_url: str | None = None
    html_url: str | None = None
    default_branch: str | None = None


class GiteaCommit(WireModel):
    id: str
    added: list[str] = []
    removed: list[str] = []
    modified: list[str] = []


class GiteaPush(WireModel):
    ref: str
    before: str
    after: str
    commits: list[GiteaCommit] | None = None
    head_commit: GiteaCommit | None = None  # absent in old Gitea, null on deletion
    repository: GiteaRepository
    pusher: GiteaUser | None = None


class GiteaDelete(WireModel):
    """`delete` (no sha at all); `ref` is the short name."""

    ref: str
    ref_type: str
    repository: GiteaRepository


class GiteaCreate(GiteaDelete):
    sha: str | None = None  # old Gitea sent none for new branches


class _MaybeRepository(WireModel):
    repository: GiteaRepository | None = None


# --- parse --------------------------------------------------------------------------------------------


def is_zero_sha(sha: str) -> bool:
    """Git's null object id: 40 zeros (SHA-1) or 64 (SHA-256); WIRE §1.5 tests /^0+$/, and so do we."""
    return bool(sha) and not sha.strip("0")


def _owner_team(repository: GiteaRepository | None) -> str | None:
    if repository is None:
        return None
    owner = repository.owner
    login = (owner.login or owner.username) if owner else None
    return team_id(login or repository.full_name.split("/", 1)[0])


def _event_name(headers: Mapping[str, str]) -> str:
    for name in ("X-Gitea-Event", "X-Gogs-Event", "X-Gitea-Event-Type", "X-GitHub-Event"):
        value = (header(headers, name) or "").strip()
        if value:
            return value
    raise PayloadError("missing X-Gitea-Event header")


class _Fields(NamedTuple):
    repository: GiteaRepository | None
    type: str
    ref: str | None
    commit: str | None
    ignore: str | None


def _push_fields(push: GiteaPush) -> tuple[str, str | None, str | None]:
    """(type, commit, ignore reason) of a push."""
    kind = "tag" if push.ref.startswith("refs/tags/") else "branch"
    if push.before == push.after:
        return "push", push.after if not is_zero_sha(push.after) else None, TEST_DELIVERY
    if is_zero_sha(push.after):
        return f"{kind}_delete", None, DELETED
    # Annotated tags: `after` is the tag object; head_commit is the peeled commit to deploy.
    commit = push.head_commit.id if push.head_commit else push.after
    if push.ref.startswith("refs/tags/"):
        return "tag", commit, None
    if push.ref.startswith("refs/heads/"):
        return "push", commit, None
    return "push", commit, f"push to {push.ref[:200]!r}: not a branch or tag"


def _full_ref(ref: str, ref_type: str) -> str:
    prefix = {"branch": "refs/heads/", "tag": "refs/tags/"}.get(ref_type)
    return f"{prefix}{ref}" if prefix and not ref.startswith("refs/") else ref


def _classify(event: str, raw: bytes) -> _Fields:
    if event == "push":
        push = load_model(GiteaPush, raw, "Gitea", "Gitea push payload")
        type_, commit, ignore = _push_fields(push)
        return _Fields(push.repository, type_, push.ref, commit, ignore)
    if event == "create":
        create = load_model(GiteaCreate, raw, "Gitea", "Gitea create payload")
        reason = f"Gitea create of {create.ref_type[:20]} {create.ref[:200]!r}: the push event carries it"
        return _Fields(
            create.repository, "create", _full_ref(create.ref, create.ref_type), create.sha, reason
        )
    if event == "delete":
        delete = load_model(GiteaDelete, raw, "Gitea", "Gitea delete payload")
        type_ = {"branch": "branch_delete", "tag": "tag_delete"}.get(delete.ref_type, "delete")
        return _Fields(delete.repository, type_, _full_ref(delete.ref, delete.ref_type), None, DELETED)
    # Other events are recorded for ops; their repository is best-effort (schemas vary per event).
    payload = load_object(raw, "Gitea")
    try:
        repository = _MaybeRepository.model_validate(payload).repository
    except ValueError:
        repository = None
    name = event[:100]
    return _Fields(repository, name, None, None, f"unsupported Gitea event type {name!r}")


def parse(headers: Mapping[str, str], body: bytes) -> list[Incoming]:
    """The one event a verified Gitea delivery carries (ignored ones carry their reason)."""
    event = _event_name(headers)
    raw = json_bytes(headers, body)
    fields = _classify(event, raw)
    delivery = (header(headers, "X-Gitea-Delivery") or header(headers, "X-Gogs-Delivery") or "").strip()
    keys = ([f"gitea:delivery:{delivery}"] if delivery else []) + [f"gitea:body:{body_sha256(raw)}"]
    return [
        Incoming(
            source="gitea",
            type=fields.type,
            delivery_id=delivery or None,
            dedup_keys=tuple(keys),
            team=_owner_team(fields.repository),
            repo=fields.repository.full_name if fields.repository else None,
            ref=fields.ref,
            commit=fields.commit,
            ignore_reason=fields.ignore,
            headers=pick(headers, OPS_HEADERS),
            payload_json=raw.decode(),
        )
    ]

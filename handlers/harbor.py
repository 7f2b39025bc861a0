"""Harbor webhooks (WIRE-FORMATS.md §3): a static Authorization value, Default or CloudEvents payloads.

Harbor retries failed jobs with identical bytes, so dedup keys come from the body: (type, occur_at,
digest, tag) for Default, the CloudEvents `id` for CloudEvents. One event per `resources[]` entry."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from handlers._headers import header, pick, require_media_type, wire_bytes
from handlers._payload import WireModel, body_sha256, load_object, validate
from handlers.errors import SignatureError
from handlers.models import Incoming, team_id

CONTENT_TYPES: frozenset[str] = frozenset({"application/json", "application/cloudevents+json"})
OPS_HEADERS = ("Content-Type", "User-Agent")
ACTIONABLE = "artifact_push"

EVENT_TYPES: Mapping[str, str] = {
    "PUSH_ARTIFACT": "artifact_push",
    "DELETE_ARTIFACT": "artifact_delete",
    "PULL_ARTIFACT": "artifact_pull",
    "SCANNING_COMPLETED": "scan",
    "SCANNING_FAILED": "scan",
    "SCANNING_STOPPED": "scan",
    "QUOTA_EXCEED": "quota",
    "QUOTA_WARNING": "quota",
    "REPLICATION": "replication",
    "TAG_RETENTION": "retention",
}
CLOUDEVENT_TYPES: Mapping[str, str] = {
    "harbor.artifact.pushed": "PUSH_ARTIFACT",
    "harbor.artifact.pulled": "PULL_ARTIFACT",
    "harbor.artifact.deleted": "DELETE_ARTIFACT",
    "harbor.quota.exceeded": "QUOTA_EXCEED",
    "harbor.quota.warned": "QUOTA_WARNING",
    "harbor.replication.status.changed": "REPLICATION",
    "harbor.scan.failed": "SCANNING_FAILED",
    "harbor.scan.completed": "SCANNING_COMPLETED",
    "harbor.scan.stopped": "SCANNING_STOPPED",
    "harbor.tag_retention.finished": "TAG_RETENTION",
}


def check_content_type(headers: Mapping[str, str]) -> None:
    require_media_type(headers, CONTENT_TYPES, "Harbor")


def verify(headers: Mapping[str, str], body: bytes, expected_authorization: str) -> None:
    """Raise SignatureError unless Authorization is exactly the value Harbor was configured to send."""
    if not expected_authorization:
        raise SignatureError("no Harbor Authorization value configured: refusing to accept deliveries")
    received = header(headers, "Authorization")
    if not received:
        raise SignatureError("missing Authorization header")
    if not hmac.compare_digest(wire_bytes(received), expected_authorization.encode()):
        raise SignatureError("Authorization header does not match")


# --- payload models -------------------------------------------------------------------------------------


class HarborResource(WireModel):
    digest: str | None = None
    tag: str | None = None
    resource_url: str | None = None


class HarborRepository(WireModel):
    name: str | None = None
    namespace: str | None = None
    repo_full_name: str | None = None


class HarborReplicationSide(WireModel):
    namespace: str | None = None


class HarborReplication(WireModel):
    src_resource: HarborReplicationSide | None = None


class HarborRetention(WireModel):
    project_name: str | None = None


class HarborEventData(WireModel):
    resources: list[HarborResource] | None = None
    repository: HarborRepository | None = None
    replication: HarborReplication | None = None
    retention: HarborRetention | None = None

    def project(self) -> str | None:
        """The project of an event without a repository block (replication, retention)."""
        if self.retention is not None and self.retention.project_name:
            return self.retention.project_name
        source = self.replication.src_resource if self.replication else None
        return source.namespace if source else None


class HarborDefault(WireModel):
    type: str
    occur_at: int
    event_data: HarborEventData | None = None


class HarborCloudEvent(WireModel):
    specversion: str
    id: str
    type: str
    data: HarborEventData | None = None


# --- parse ----------------------------------------------------------------------------------------------


def split_resource_url(url: str) -> tuple[str, str | None, str | None]:
    """`host/project/repo:tag` or `host/project/repo@sha256:…` → (image, tag, digest). A scheme, which
    real Harbor never sends but some test fixtures do, is dropped; a registry port is kept."""
    image = url.split("://", 1)[-1]
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    head, slash, last = image.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
        image = f"{head}{slash}{last}"
    return image, tag, digest


def _resource_fields(resource: HarborResource | None) -> tuple[str | None, str | None, str | None]:
    """(image, tag, digest) of one resource; the digest Harbor puts in `tag` for an untagged push is
    not a tag."""
    if resource is None:
        return None, None, None
    image = url_tag = url_digest = None
    if resource.resource_url:
        image, url_tag, url_digest = split_resource_url(resource.resource_url)
    tag = resource.tag or url_tag
    if tag and tag.startswith("sha256:"):
        tag = None
    return image, tag, resource.digest or url_digest


def _repository_fields(data: HarborEventData | None, image: str | None) -> tuple[str | None, str | None]:
    """(team, repo full name), from the repository block, else from the image path, else (team only)
    from the replication/retention project."""
    full = namespace = None
    repository = data.repository if data else None
    if repository is not None:
        namespace = repository.namespace
        full = repository.repo_full_name or (
            f"{namespace}/{repository.name}" if namespace and repository.name else None
        )
    if full is None and image and image.count("/") >= 2:
        full = image.split("/", 1)[1]
    if namespace is None and full:
        namespace = full.split("/", 1)[0]
    if namespace is None and data is not None:
        namespace = data.project()
    return team_id(namespace), full


def _reason(broker_type: str, shown_type: str, resource: HarborResource | None) -> str | None:
    if broker_type != ACTIONABLE:
        return f"Harbor {shown_type} event: only PUSH_ARTIFACT deploys"
    if resource is None:
        return f"Harbor {shown_type} event without resources: nothing to deploy"
    if not resource.resource_url:
        return f"Harbor {shown_type} event without resource_url: cannot tell which image"
    return None


def _events(
    *,
    harbor_type: str,
    shown_type: str,
    data: HarborEventData | None,
    keys: Sequence[tuple[str, ...]],
    delivery_id: str | None,
    headers: Mapping[str, str],
    payload_json: str,
) -> list[Incoming]:
    """One Incoming per resource (one with no resource fields when there are none); `keys[i]` are
    the dedup keys of resource i."""
    broker_type = EVENT_TYPES.get(harbor_type, harbor_type.lower()[:100])
    resources: list[HarborResource | None] = list((data.resources if data else None) or []) or [None]
    kept = pick(headers, OPS_HEADERS)
    incoming = []
    for resource, dedup in zip(resources, keys, strict=True):
        image, tag, digest = _resource_fields(resource)
        team, repo = _repository_fields(data, image)
        incoming.append(
            Incoming(
                source="harbor",
                type=broker_type,
                delivery_id=delivery_id,
                dedup_keys=dedup,
                team=team,
                repo=repo,
                image=image,
                tag=tag,
                digest=digest,
                ignore_reason=_reason(broker_type, shown_type, resource),
                headers=kept,
                payload_json=payload_json,
            )
        )
    return incoming


def _resource_count(data: HarborEventData | None) -> int:
    return max(1, len((data.resources if data else None) or []))


def parse(headers: Mapping[str, str], body: bytes) -> list[Incoming]:
    """One event per resource of a verified Harbor delivery, in either payload format."""
    payload = load_object(body, "Harbor")
    if "specversion" in payload:
        ce = validate(HarborCloudEvent, payload, "Harbor CloudEvent")
        harbor_type = (
            CLOUDEVENT_TYPES.get(ce.type) or ce.type.removeprefix("harbor.").replace(".", "_").upper()
        )
        count = _resource_count(ce.data)
        return _events(
            harbor_type=harbor_type,
            shown_type=f"{ce.type[:100]} ({harbor_type[:100]})",
            data=ce.data,
            keys=[(f"harbor:ce:{ce.id}:{index}",) for index in range(count)],
            delivery_id=ce.id,
            headers=headers,
            payload_json=body.decode(),
        )
    event = validate(HarborDefault, payload, "Harbor payload")
    resources = (event.event_data.resources if event.event_data else None) or []
    if resources:
        keys = [(f"harbor:{event.type}:{event.occur_at}:{r.digest or ''}:{r.tag or ''}",) for r in resources]
    else:  # e.g. REPLICATION: nothing per-resource to key on, and retries resend identical bytes
        keys = [(f"harbor:{event.type}:{event.occur_at}:body:{body_sha256(body)}",)]
    return _events(
        harbor_type=event.type,
        shown_type=event.type[:100],
        data=event.event_data,
        keys=keys,
        delivery_id=None,
        headers=headers,
        payload_json=body.decode(),
    )

"""Sign a body the way each sender does and return the request headers (WIRE-FORMATS.md §1.1, §2.2, §3.2).

Tests use these to build authentic deliveries; tampering is then a matter of editing one header or byte.
The header sets mirror what the real senders put on the wire, including the ones the broker ignores."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote_plus

GO_USER_AGENT = "Go-http-client/1.1"
DRONE_KEY_ID = "hmac-key"


def gitea_signature(body: bytes, secret: str) -> str:
    """Lowercase hex HMAC-SHA256 over the JSON bytes, as X-Gitea-Signature carries it."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gitea_headers(
    body: bytes,
    secret: str,
    *,
    event: str = "push",
    delivery: str | None = None,
    event_type: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Headers of a Gitea delivery of `body` (the JSON payload bytes, even for the form content type,
    because Gitea signs the JSON string, not the form body). An empty `secret` gives the empty
    signatures Gitea sends for an unsigned webhook."""
    delivery = delivery or str(uuid.uuid4())
    event_type = event_type or event
    sha256 = gitea_signature(body, secret) if secret else ""
    sha1 = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest() if secret else ""
    headers = {
        "Content-Type": content_type,
        "User-Agent": GO_USER_AGENT,
        "X-Hub-Signature": f"sha1={sha1}",
        "X-Hub-Signature-256": f"sha256={sha256}",
    }
    for family in ("Gitea", "Gogs", "GitHub"):
        headers[f"X-{family}-Delivery"] = delivery
        headers[f"X-{family}-Event"] = event
        headers[f"X-{family}-Event-Type"] = event_type
    for family in ("Gitea", "Gogs"):
        headers[f"X-{family}-Signature"] = sha256
    return headers


def gitea_form_body(json_body: bytes) -> bytes:
    """The body Gitea sends for a `form` webhook: `payload=<urlencoded JSON>`."""
    return b"payload=" + quote_plus(json_body.decode()).encode()


def drone_digest(body: bytes) -> str:
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def http_date(when: datetime) -> str:
    """RFC 7231 IMF-fixdate, e.g. 'Tue, 14 May 2024 07:30:31 GMT' (Go's http.TimeFormat)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return format_datetime(when.astimezone(UTC).replace(microsecond=0), usegmt=True)


def drone_signing_string(values: Sequence[tuple[str, str]]) -> str:
    """draft-cavage signing string: `<name>: <value>` lines joined by newline, no trailing newline."""
    return "\n".join(f"{name.lower()}: {value}" for name, value in values)


def drone_signature_header(
    secret: str,
    values: Sequence[tuple[str, str]],
    *,
    algorithm: str = "hmac-sha256",
    key_id: str = DRONE_KEY_ID,
) -> str:
    """The `Signature` header value over `values` (header name, value) in order, as
    99designs/httpsignatures-go writes it. `algorithm` is only written, the MAC is always
    HMAC-SHA256 unless it is 'hmac-sha1' (lets tests sign with a wrong algorithm)."""
    digestmod = hashlib.sha1 if algorithm == "hmac-sha1" else hashlib.sha256
    mac = hmac.new(secret.encode(), drone_signing_string(values).encode(), digestmod).digest()
    signature = base64.b64encode(mac).decode()
    names = " ".join(name.lower() for name, _ in values)
    return f'keyId="{key_id}",algorithm="{algorithm}",signature="{signature}",headers="{names}"'


def drone_headers(
    body: bytes,
    secret: str,
    *,
    date: datetime | None = None,
    event: str = "build",
) -> dict[str, str]:
    """Headers of a Drone global webhook delivery of `body`, signed over `date digest` at `date`
    (default: now)."""
    date_value = http_date(date or datetime.now(UTC))
    digest = drone_digest(body)
    return {
        "Content-Type": "application/json",
        "User-Agent": GO_USER_AGENT,
        "X-Drone-Event": event,
        "Date": date_value,
        "Digest": digest,
        "Signature": drone_signature_header(secret, [("date", date_value), ("digest", digest)]),
    }


def harbor_headers(auth: str, *, cloudevents: bool = False) -> dict[str, str]:
    """Headers of a Harbor webhook job: the policy's auth header verbatim (omitted when empty)."""
    headers = {
        "Content-Type": "application/cloudevents+json" if cloudevents else "application/json",
        "User-Agent": GO_USER_AGENT,
    }
    if auth:
        headers["Authorization"] = auth
    return headers

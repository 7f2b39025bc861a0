"""draft-cavage HTTP Signatures as Drone's global webhooks use them (WIRE-FORMATS.md §2.3), via
99designs/httpsignatures-go: `Signature: keyId="hmac-key",algorithm="hmac-sha256",signature="<b64>",
headers="date digest"`, HMAC over `<name>: <value>` lines joined by newline.

The library itself never checks Digest against the body nor Date freshness; `verify_request` does both,
after the signature, so a forged body or a replayed capture fails even with a valid signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from handlers._headers import header, wire_bytes
from handlers.errors import SignatureError

_PARAM = re.compile(r'(\w+)="([^"]*)"')
_KNOWN = frozenset({"keyId", "algorithm", "signature", "headers"})
ALGORITHMS = {"hmac-sha256": hashlib.sha256, "hmac-sha1": hashlib.sha1}
REQUIRED_ALGORITHM = "hmac-sha256"
REQUIRED_HEADERS = ("date", "digest")


@dataclass(frozen=True)
class HttpSignature:
    key_id: str
    algorithm: str
    signature: str
    headers: tuple[str, ...]


def parse_signature(value: str) -> HttpSignature:
    """Parse a Signature header value the way httpsignatures-go does: unknown parameters are an
    error; keyId, algorithm and signature are required; `headers` defaults to `date`."""
    params: dict[str, str] = {}
    for name, param in _PARAM.findall(value):
        if name not in _KNOWN:
            raise SignatureError(f"unexpected parameter {name[:40]!r} in Signature header")
        params[name] = param
    for required in ("keyId", "algorithm", "signature"):
        if not params.get(required):
            raise SignatureError(f"Signature header lacks {required}")
    names = tuple(params.get("headers", "date").lower().split()) or ("date",)
    return HttpSignature(params["keyId"], params["algorithm"].lower(), params["signature"], names)


def signature_from_headers(headers: Mapping[str, str]) -> HttpSignature:
    """The signature from `Signature`, else from `Authorization: Signature ...`."""
    value = header(headers, "Signature")
    if not value:
        auth = header(headers, "Authorization") or ""
        scheme, _, rest = auth.strip().partition(" ")
        value = rest if scheme.lower() == "signature" else None
    if not value:
        raise SignatureError("missing Signature header")
    return parse_signature(value)


def signing_string(names: tuple[str, ...], headers: Mapping[str, str]) -> str:
    lines = []
    for name in names:
        if name == "(request-target)":
            # Drone's global webhook never signs it, and verify() has no request line to rebuild it from.
            raise SignatureError("(request-target) in the signed headers is not supported")
        value = header(headers, name)
        if value is None:
            raise SignatureError(f"signed header {name[:40]!r} is missing from the request")
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def compute_signature(secret: str, signing: str, algorithm: str = REQUIRED_ALGORITHM) -> str:
    """base64 of the HMAC of the signing string (the `signature` parameter)."""
    digestmod = ALGORITHMS[algorithm]
    mac = hmac.new(secret.encode(), wire_bytes(signing), digestmod).digest()
    return base64.b64encode(mac).decode()


def body_digest(body: bytes) -> str:
    """The Digest header value Drone sends for `body`."""
    return "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()


def _sha256_entry(digest_header: str) -> str | None:
    """The SHA-256 entry of a (possibly multi-valued, RFC 3230) Digest header, as `SHA-256=<b64>`."""
    for part in digest_header.split(","):
        algorithm, sep, value = part.strip().partition("=")
        if sep and algorithm.lower() == "sha-256":
            return f"SHA-256={value}"
    return None


def verify_request(
    headers: Mapping[str, str], body: bytes, secret: str, *, now: float, max_skew_s: int
) -> None:
    """Signature (hmac-sha256 over at least date and digest), then Digest against the body, then Date
    within ±max_skew_s of `now` (Unix seconds)."""
    if not secret:
        raise SignatureError("no Drone secret configured: refusing to accept deliveries")
    sig = signature_from_headers(headers)
    if sig.algorithm != REQUIRED_ALGORITHM:
        raise SignatureError(f"signature algorithm {sig.algorithm[:40]!r} not accepted: need hmac-sha256")
    for name in REQUIRED_HEADERS:
        if name not in sig.headers:
            raise SignatureError(f"signature must cover the {name!r} header")
    expected = compute_signature(secret, signing_string(sig.headers, headers))
    if not hmac.compare_digest(expected.encode(), wire_bytes(sig.signature)):
        raise SignatureError("Drone signature does not match")

    received = _sha256_entry(header(headers, "Digest") or "")
    if received is None or not hmac.compare_digest(wire_bytes(received), body_digest(body).encode()):
        raise SignatureError("Digest header does not match the body")

    date_value = header(headers, "Date") or ""
    try:
        sent_at = parsedate_to_datetime(date_value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise SignatureError("Date header is not an HTTP date") from None
    # '-0000' parses as naive; HTTP dates are GMT by definition.
    sent = (sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)).timestamp()
    skew = now - sent
    if abs(skew) > max_skew_s:
        direction = "old" if skew > 0 else "in the future"
        raise SignatureError(
            f"Date is {abs(skew):.0f}s {direction} (allowed skew {max_skew_s}s): possible replay"
        )

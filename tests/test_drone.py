"""Drone verify/parse, pure: the draft-cavage signature table, the docs test vector, build statuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import drone, drone_signature
from handlers.errors import PayloadError, SignatureError, WebhookError
from handlers.models import BuildInfo
from tests.conftest import DRONE_SECRET
from tests.payloads import (
    AFTER_SHA,
    drone_build,
    drone_repo_event,
    drone_user_event,
    go_json,
    json_values,
    mutated,
)
from tests.signing import drone_digest, drone_headers, drone_signature_header, http_date

Headers = dict[str, str]
SENT = datetime(2024, 5, 14, 7, 30, 31, tzinfo=UTC)
NOW = SENT.timestamp()
BODY = drone_build()
SKEW = 300


def _signed(values: list[tuple[str, str]], **kwargs: str) -> Callable[[Headers, bytes], Headers]:
    """Replace the Signature with one over `values` (header name, value), in that order."""

    def edit(headers: Headers, body: bytes) -> Headers:
        return {**headers, "Signature": drone_signature_header(DRONE_SECRET, values, **kwargs)}

    return edit


def _set(name: str, value: str | None) -> Callable[[Headers, bytes], Headers]:
    """Set header `name` to `value`, or drop it when value is None."""

    def edit(headers: Headers, body: bytes) -> Headers:
        edited = {k: v for k, v in headers.items() if k != name}
        if value is not None:
            edited[name] = value
        return edited

    return edit


def _as_authorization(headers: Headers, body: bytes) -> Headers:
    signature = headers.pop("Signature")
    return {**headers, "Authorization": f"Signature {signature}"}


def _lowercase_names(headers: Headers, body: bytes) -> Headers:
    return {k.lower(): v for k, v in headers.items()}


DATE = http_date(SENT)
DIGEST = drone_digest(BODY)
OTHER_DIGEST = drone_digest(b"{}")


@dataclass(frozen=True)
class SigCase:
    name: str
    edit: Callable[[Headers, bytes], Headers] = lambda h, b: h
    body: bytes = BODY
    secret: str = DRONE_SECRET
    now: float = NOW
    error: str | None = None


SIG_CASES = [
    SigCase("valid"),
    SigCase("valid at the edge of the window (old)", now=NOW + SKEW),
    SigCase("valid at the edge of the window (future)", now=NOW - SKEW),
    SigCase("valid in Authorization: Signature", edit=_as_authorization),
    SigCase("valid, header names lower-cased", edit=_lowercase_names),
    SigCase(
        "valid, multi-valued Digest",
        edit=lambda h, b: _signed([("date", DATE), ("digest", f"MD5=abc,{DIGEST}")])(
            {**h, "Digest": f"MD5=abc,{DIGEST}"}, b
        ),
    ),
    SigCase("tampered body byte", body=BODY.replace(b'"success"', b'"successs"'), error="Digest"),
    SigCase(
        "tampered body with its Digest recomputed",
        edit=_set("Digest", OTHER_DIGEST),
        body=b"{}",
        error="signature",
    ),
    SigCase("wrong secret", secret="not-the-secret", error="signature does not match"),
    SigCase(
        "Date with an undecodable byte", edit=_set("Date", DATE + "\udcff"), error="signature does not match"
    ),
    SigCase("missing Signature", edit=_set("Signature", None), error="missing Signature"),
    SigCase("missing Date header", edit=_set("Date", None), error="'date' is missing"),
    SigCase("missing Digest header", edit=_set("Digest", None), error="'digest' is missing"),
    SigCase("stale Date", now=NOW + SKEW + 1, error="old"),
    SigCase("future Date", now=NOW - SKEW - 1, error="in the future"),
    SigCase(
        "Digest mismatch under a valid signature",
        edit=lambda h, b: _signed([("date", DATE), ("digest", OTHER_DIGEST)])(
            {**h, "Digest": OTHER_DIGEST}, b
        ),
        error="Digest header does not match",
    ),
    SigCase("date not in the signed headers", edit=_signed([("digest", DIGEST)]), error="cover the 'date'"),
    SigCase("digest not in the signed headers", edit=_signed([("date", DATE)]), error="cover the 'digest'"),
    SigCase(
        "wrong algorithm",
        edit=_signed([("date", DATE), ("digest", DIGEST)], algorithm="hmac-sha1"),
        error="'hmac-sha1' not accepted",
    ),
    SigCase(
        "unknown algorithm",
        edit=_signed([("date", DATE), ("digest", DIGEST)], algorithm="rsa-sha256"),
        error="not accepted",
    ),
    SigCase(
        "unknown Signature parameter",
        edit=lambda h, b: {**h, "Signature": h["Signature"] + ',created="1"'},
        error="unexpected parameter 'created'",
    ),
    SigCase(
        "missing keyId",
        edit=lambda h, b: {**h, "Signature": h["Signature"].replace('keyId="hmac-key",', "")},
        error="lacks keyId",
    ),
    SigCase(
        "empty signature parameter",
        edit=lambda h, b: {**h, "Signature": 'keyId="hmac-key",algorithm="hmac-sha256",signature=""'},
        error="lacks signature",
    ),
    SigCase(
        "Signature without headers defaults to date only",
        edit=lambda h, b: {**h, "Signature": h["Signature"].split(',headers="')[0]},
        error="cover the 'digest'",
    ),
    SigCase(
        "Date that is not an HTTP date",
        edit=lambda h, b: _signed([("date", "yesterday"), ("digest", DIGEST)])({**h, "Date": "yesterday"}, b),
        error="not an HTTP date",
    ),
    SigCase(
        "(request-target) signed",
        edit=_signed([("(request-target)", "post /hooks/drone"), ("date", DATE), ("digest", DIGEST)]),
        error="(request-target)",
    ),
    SigCase(
        "Authorization with another scheme",
        edit=lambda h, b: _set("Signature", None)({**h, "Authorization": "Bearer x"}, b),
        error="missing Signature",
    ),
]


@pytest.mark.parametrize("case", SIG_CASES, ids=lambda c: c.name)
def test_verify(case: SigCase) -> None:
    headers = case.edit(drone_headers(BODY, case.secret, date=SENT), BODY)
    if case.error is None:
        drone.verify(headers, case.body, DRONE_SECRET, now=case.now, max_skew_s=SKEW)
        return
    with pytest.raises(SignatureError) as raised:
        drone.verify(headers, case.body, DRONE_SECRET, now=case.now, max_skew_s=SKEW)
    assert raised.value.status == 401
    assert case.error in raised.value.message
    signature = drone_signature.signature_from_headers(drone_headers(BODY, case.secret, date=SENT)).signature
    assert DRONE_SECRET not in raised.value.message
    assert signature not in raised.value.message


def test_broker_without_secret_rejects() -> None:
    headers = drone_headers(BODY, "", date=SENT)
    with pytest.raises(SignatureError, match="no Drone secret"):
        drone.verify(headers, BODY, "", now=NOW, max_skew_s=SKEW)


def test_docs_test_vector() -> None:
    """drone/docs content/webhooks/overview.md: key, signing string and signature (WIRE §2.3)."""
    headers = {
        "Date": "Fri, 15 Jul 2022 18:47:25 GMT",
        "Digest": "SHA-256=wyFE2yWKPBpOLHuIVBHf4oD21wY4yINZZzoyR9jB6xo=",
    }
    signing = drone_signature.signing_string(("date", "digest"), headers)
    assert signing == (
        "date: Fri, 15 Jul 2022 18:47:25 GMT\ndigest: SHA-256=wyFE2yWKPBpOLHuIVBHf4oD21wY4yINZZzoyR9jB6xo="
    )
    signature = drone_signature.compute_signature("a34999ae0599f579eca8582058b46eee", signing)
    assert signature == "ObOcdsOSyYMy+0DDlg6X1naqPYY0qe59OrHmjv6Hav0="


def test_parse_signature_like_httpsignatures_go() -> None:
    parsed = drone_signature.parse_signature(
        'keyId="hmac-key",algorithm="HMAC-SHA256",signature="abc=",headers="Date Digest"'
    )
    assert parsed == drone_signature.HttpSignature("hmac-key", "hmac-sha256", "abc=", ("date", "digest"))


def test_naive_gmt_date_is_utc() -> None:
    """`-0000` parses as a naive datetime; it must not be read as local time."""
    date = "Tue, 14 May 2024 07:30:31 -0000"
    headers = {
        "Date": date,
        "Digest": DIGEST,
        "Signature": drone_signature_header(DRONE_SECRET, [("date", date), ("digest", DIGEST)]),
    }
    drone.verify(headers, BODY, DRONE_SECRET, now=NOW, max_skew_s=1)


# --- parse --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(drone.FINAL_STATUSES))
def test_final_build_is_actionable(status: str) -> None:
    body = drone_build(status=status, build_id=555, number=31)
    [incoming] = drone.parse(drone_headers(body, DRONE_SECRET), body)
    assert incoming.ignore_reason is None
    assert (incoming.source, incoming.type, incoming.delivery_id) == ("drone", "build", f"555:{status}")
    assert incoming.dedup_keys == (f"drone:build:555:{status}",)
    assert (incoming.team, incoming.repo, incoming.ref, incoming.commit) == (
        "demo",
        "team-demo/hello",
        "refs/heads/main",
        AFTER_SHA,
    )
    link = json.loads(drone_build())["build"]["link"]
    assert incoming.build == BuildInfo(id=555, number=31, status=status, link=link)
    assert json.loads(incoming.payload_json) == json.loads(body)


@pytest.mark.parametrize("status", ["pending", "running", "blocked", "waiting_on_dependencies"])
def test_running_build_is_ignored(status: str) -> None:
    body = drone_build(status=status, number=31, action="created" if status == "pending" else "updated")
    [incoming] = drone.parse(drone_headers(body, DRONE_SECRET), body)
    assert incoming.ignore_reason == f"build 31 still {status}: acting on final statuses only"
    assert incoming.dedup_keys == (f"drone:build:101:{status}",)


def test_unknown_status_is_ignored() -> None:
    body = drone_build(status="paused")
    [incoming] = drone.parse(drone_headers(body, DRONE_SECRET), body)
    assert incoming.ignore_reason is not None and "unknown status 'paused'" in incoming.ignore_reason


def test_tag_build() -> None:
    body = drone_build(ref="refs/tags/1.4.2", event="tag")
    [incoming] = drone.parse(drone_headers(body, DRONE_SECRET), body)
    assert (incoming.ref, incoming.ignore_reason) == ("refs/tags/1.4.2", None)


@pytest.mark.parametrize(
    ("event", "body", "team", "reason"),
    [
        ("repo", drone_repo_event(), "demo", "Drone repo:enabled event: only build events are acted on"),
        ("user", drone_user_event(), None, "Drone user:created event: only build events are acted on"),
    ],
)
def test_other_events_are_ignored(event: str, body: bytes, team: str | None, reason: str) -> None:
    [incoming] = drone.parse(drone_headers(body, DRONE_SECRET, event=event), body)
    assert (incoming.type, incoming.team, incoming.ignore_reason) == (event, team, reason)
    assert incoming.build is None and len(incoming.dedup_keys) == 1


def test_event_from_body_when_header_missing() -> None:
    [incoming] = drone.parse({"Content-Type": "application/json"}, BODY)
    assert incoming.type == "build" and incoming.ignore_reason is None


def test_repo_without_slug() -> None:
    data = json.loads(drone_build())
    del data["repo"]["slug"]
    body = go_json(data)
    [incoming] = drone.parse({"X-Drone-Event": "build"}, body)
    assert (incoming.team, incoming.repo) == ("demo", "team-demo/hello")


def test_parse_keeps_ops_headers_only() -> None:
    headers = drone_headers(BODY, DRONE_SECRET, date=SENT)
    [incoming] = drone.parse(headers, BODY)
    assert incoming.headers == {
        k: headers[k] for k in ("X-Drone-Event", "Date", "Digest", "Content-Type", "User-Agent")
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (go_json({"event": "build", "action": "updated"}), "schema"),
        (
            go_json({**json.loads(drone_build()), "build": {"id": "abc", "number": 1, "status": "success"}}),
            "schema",
        ),
    ],
    ids=["not JSON", "array", "no build", "build id not a number"],
)
def test_parse_rejects(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as raised:
        drone.parse({"X-Drone-Event": "build"}, body)
    assert message in raised.value.message


def test_schema_error_detail() -> None:
    with pytest.raises(PayloadError) as raised:
        drone.parse({"X-Drone-Event": "build"}, go_json({"event": "build"}))
    assert raised.value.detail == [{"loc": ["build"], "msg": "Field required"}]


BODIES = (
    st.binary(max_size=300)
    | json_values().map(lambda v: json.dumps(v).encode())
    | mutated(drone_build())
    | mutated(drone_repo_event())
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=st.sampled_from(["build", "repo", "user", ""]), body=BODIES)
def test_parse_only_raises_webhook_errors(event: str, body: bytes) -> None:
    try:
        incomings = drone.parse({"X-Drone-Event": event}, body)
    except WebhookError:
        return
    assert len(incomings) == 1


HEADER_TEXT = st.text(max_size=120) | st.sampled_from(
    ['keyId="k",algorithm="hmac-sha256",signature="x",headers="date digest"']
)


@settings(max_examples=300, deadline=None)
@given(signature=HEADER_TEXT, date=HEADER_TEXT, digest=HEADER_TEXT, authorization=HEADER_TEXT)
def test_verify_only_raises_signature_errors(
    signature: str, date: str, digest: str, authorization: str
) -> None:
    """verify() runs on unauthenticated input: anything odd must be a 401, never a crash."""
    headers = {"Signature": signature, "Date": date, "Digest": digest, "Authorization": authorization}
    with pytest.raises(SignatureError):
        drone.verify(headers, BODY, DRONE_SECRET, now=NOW, max_skew_s=SKEW)

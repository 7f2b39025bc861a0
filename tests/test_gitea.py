"""Gitea verify/parse, pure: one signature table (Flux style), content types, one case per event kind."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import gitea
from handlers.errors import PayloadError, SignatureError, WebhookError
from tests.conftest import GITEA_SECRET
from tests.payloads import (
    AFTER_SHA,
    TAG_COMMIT_SHA,
    TAG_OBJECT_SHA,
    ZERO_SHA,
    ZERO_SHA256,
    fake_sha,
    gitea_branch_delete_push,
    gitea_create,
    gitea_delete,
    gitea_json,
    gitea_push,
    gitea_tag_delete,
    gitea_tag_push,
    gitea_test_delivery,
    json_values,
    mutated,
)
from tests.signing import gitea_form_body, gitea_headers, gitea_signature

Headers = dict[str, str]
BODY = gitea_push()
SIGNATURE_HEADERS = ("X-Gitea-Signature", "X-Gogs-Signature", "X-Hub-Signature-256", "X-Hub-Signature")


def _only(name: str, value: str) -> Callable[[Headers, bytes], tuple[Headers, bytes]]:
    """Drop every signature header but `name`, set to `value` (or the valid hex when value is '')."""

    def edit(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
        kept = {k: v for k, v in headers.items() if k not in SIGNATURE_HEADERS}
        kept[name] = value.format(sig=gitea_signature(body, GITEA_SECRET))
        return kept, body

    return edit


def _flip_byte(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    index = body.index(b"Bump")
    return headers, body[:index] + b"b" + body[index + 1 :]


def _lowercase_names(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {k.lower(): v for k, v in headers.items()}, body


def _uppercase_hex(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {**headers, "X-Gitea-Signature": headers["X-Gitea-Signature"].upper()}, body


def _form(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {**headers, "Content-Type": "application/x-www-form-urlencoded"}, gitea_form_body(body)


def _form_signed_over_form_body(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    form = gitea_form_body(body)
    signed = gitea_headers(form, GITEA_SECRET, content_type="application/x-www-form-urlencoded")
    return signed, form


def _drop_signatures(headers: Headers, body: bytes) -> tuple[Headers, bytes]:
    return {k: v for k, v in headers.items() if k not in SIGNATURE_HEADERS}, body


@dataclass(frozen=True)
class SigCase:
    name: str
    edit: Callable[[Headers, bytes], tuple[Headers, bytes]] = lambda h, b: (h, b)
    signing_secret: str = GITEA_SECRET
    configured_secret: str = GITEA_SECRET
    error: str | None = None  # substring of the SignatureError message; None = accepted
    extra: dict[str, str] = field(default_factory=dict)


SIG_CASES = [
    SigCase("valid"),
    SigCase("valid, header names lower-cased", edit=_lowercase_names),
    SigCase("valid, upper-case hex", edit=_uppercase_hex),
    SigCase("valid via X-Hub-Signature-256 only", edit=_only("X-Hub-Signature-256", "sha256={sig}")),
    SigCase("valid via X-Gogs-Signature only", edit=_only("X-Gogs-Signature", "{sig}")),
    SigCase("valid form body, signature over the JSON", edit=_form),
    SigCase("tampered body byte", edit=_flip_byte, error="does not match"),
    SigCase("wrong secret", signing_secret="not-the-secret", error="does not match"),
    SigCase("missing signature headers", edit=_drop_signatures, error="unsigned"),
    SigCase("wrong prefix", edit=_only("X-Hub-Signature-256", "sha1={sig}"), error="sha256="),
    SigCase("no prefix", edit=_only("X-Hub-Signature-256", "{sig}"), error="sha256="),
    SigCase("empty signature (webhook without secret)", signing_secret="", error="unsigned"),
    SigCase(
        "X-Hub-Signature (sha1) alone is not enough",
        edit=_only("X-Hub-Signature", "sha1=x"),
        error="unsigned",
    ),
    SigCase(
        "signature over the form body instead of the JSON", edit=_form_signed_over_form_body, error="match"
    ),
    SigCase("broker has no secret", configured_secret="", error="no Gitea secret"),
    SigCase("truncated signature", edit=_only("X-Gitea-Signature", "{sig:.63}"), error="does not match"),
    SigCase("non-ASCII signature", edit=_only("X-Gitea-Signature", "é{sig}"), error="does not match"),
]


@pytest.mark.parametrize("case", SIG_CASES, ids=lambda c: c.name)
def test_verify(case: SigCase) -> None:
    headers, body = case.edit(gitea_headers(BODY, case.signing_secret), BODY)
    if case.error is None:
        gitea.verify(headers, body, case.configured_secret)
        return
    with pytest.raises(SignatureError) as raised:
        gitea.verify(headers, body, case.configured_secret)
    assert raised.value.status == 401
    assert case.error in raised.value.message
    # Errors reach clients and logs: never echo the secret or what was received.
    for secret_text in (GITEA_SECRET, gitea_signature(body, case.signing_secret or "x")):
        assert secret_text not in raised.value.message


def test_form_body_without_payload_field_is_unauthenticated() -> None:
    headers = gitea_headers(BODY, GITEA_SECRET, content_type="application/x-www-form-urlencoded")
    with pytest.raises(SignatureError, match="payload"):
        gitea.verify(headers, b"other=1", GITEA_SECRET)


# --- parse --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseCase:
    name: str
    body: bytes
    event: str = "push"
    type: str = "push"
    ref: str | None = "refs/heads/main"
    commit: str | None = AFTER_SHA
    ignore: str | None = None  # substring of the ignore reason; None = actionable


PARSE_CASES = [
    ParseCase("branch push", gitea_push()),
    ParseCase("push, old Gitea without head_commit", gitea_push(head_commit=False)),
    ParseCase(
        "push to another branch", gitea_push(ref="refs/heads/release/1.x"), ref="refs/heads/release/1.x"
    ),
    ParseCase("new branch (before = zeros)", gitea_push(before=ZERO_SHA)),
    ParseCase(
        "annotated tag: commit is the peeled head_commit",
        gitea_tag_push(),
        type="tag",
        ref="refs/tags/1.4.2",
        commit=TAG_COMMIT_SHA,
    ),
    ParseCase(
        "lightweight tag",
        gitea_tag_push(tag="v2.0.0", commit=None),
        type="tag",
        ref="refs/tags/v2.0.0",
        commit=TAG_OBJECT_SHA,
    ),
    ParseCase(
        "tag deleted (push, after = zeros)",
        gitea_tag_delete(),
        type="tag_delete",
        ref="refs/tags/1.4.2",
        commit=None,
        ignore="ref deleted: never deploys",
    ),
    ParseCase(
        "branch deleted, legacy push with after = zeros",
        gitea_branch_delete_push(),
        type="branch_delete",
        ref="refs/heads/feature/x",
        commit=None,
        ignore="ref deleted: never deploys",
    ),
    ParseCase(
        "branch deleted in a SHA-256 repo (64 zeros)",
        gitea_branch_delete_push(zeros=ZERO_SHA256, before=hashlib.sha256(b"x").hexdigest()),
        type="branch_delete",
        ref="refs/heads/feature/x",
        commit=None,
        ignore="ref deleted",
    ),
    ParseCase(
        "test delivery, newest Gitea (zeros)",
        gitea_test_delivery(),
        commit=None,
        ignore="Gitea test delivery",
    ),
    ParseCase(
        "test delivery, older Gitea (latest real commit)",
        gitea_test_delivery(sha=fake_sha("latest")),
        commit=fake_sha("latest"),
        ignore="Gitea test delivery",
    ),
    ParseCase(
        "push on a ref that is neither branch nor tag",
        gitea_push(ref="refs/notes/commits"),
        ref="refs/notes/commits",
        ignore="not a branch or tag",
    ),
    ParseCase(
        "create tag",
        gitea_create("1.4.2", "tag"),
        event="create",
        type="create",
        ref="refs/tags/1.4.2",
        commit=TAG_OBJECT_SHA,
        ignore="create",
    ),
    ParseCase(
        "create branch",
        gitea_create("feature/x", "branch", sha=AFTER_SHA),
        event="create",
        type="create",
        ref="refs/heads/feature/x",
        ignore="create",
    ),
    ParseCase(
        "delete branch",
        gitea_delete("feature/x", "branch"),
        event="delete",
        type="branch_delete",
        ref="refs/heads/feature/x",
        commit=None,
        ignore="ref deleted: never deploys",
    ),
    ParseCase(
        "delete tag",
        gitea_delete("1.4.2", "tag"),
        event="delete",
        type="tag_delete",
        ref="refs/tags/1.4.2",
        commit=None,
        ignore="ref deleted: never deploys",
    ),
    ParseCase(
        "unsupported event type",
        gitea_json({"action": "opened", "number": 3, "repository": {"full_name": "team-demo/hello"}}),
        event="issues",
        type="issues",
        ref=None,
        commit=None,
        ignore="unsupported Gitea event type 'issues'",
    ),
]


@pytest.mark.parametrize("case", PARSE_CASES, ids=lambda c: c.name)
def test_parse(case: ParseCase) -> None:
    headers = gitea_headers(
        case.body, GITEA_SECRET, event=case.event, delivery="8d2c1b9e-0000-4000-8000-000000000001"
    )
    gitea.verify(headers, case.body, GITEA_SECRET)
    [incoming] = gitea.parse(headers, case.body)
    assert (incoming.source, incoming.type, incoming.ref, incoming.commit) == (
        "gitea",
        case.type,
        case.ref,
        case.commit,
    )
    assert (incoming.team, incoming.repo) == ("demo", "team-demo/hello")
    assert incoming.delivery_id == "8d2c1b9e-0000-4000-8000-000000000001"
    assert incoming.dedup_keys == (
        "gitea:delivery:8d2c1b9e-0000-4000-8000-000000000001",
        f"gitea:body:{hashlib.sha256(case.body).hexdigest()}",
    )
    assert json.loads(incoming.payload_json) == json.loads(case.body)
    if case.ignore is None:
        assert incoming.ignore_reason is None
    else:
        assert incoming.ignore_reason is not None and case.ignore in incoming.ignore_reason


def test_parse_keeps_ops_headers_only() -> None:
    headers = {**gitea_headers(BODY, GITEA_SECRET), "Authorization": "Bearer gitea-auth"}
    [incoming] = gitea.parse(headers, BODY)
    assert set(incoming.headers) == {
        "X-Gitea-Event",
        "X-Gitea-Event-Type",
        "X-Gitea-Delivery",
        "Content-Type",
        "User-Agent",
    }
    assert not any(
        "Bearer" in v or gitea_signature(BODY, GITEA_SECRET) in v for v in incoming.headers.values()
    )


def test_parse_form_body_matches_json_body() -> None:
    delivery = "8d2c1b9e-0000-4000-8000-000000000002"
    json_headers = gitea_headers(BODY, GITEA_SECRET, delivery=delivery)
    form_headers = {**json_headers, "Content-Type": "application/x-www-form-urlencoded"}
    [from_form] = gitea.parse(form_headers, gitea_form_body(BODY))
    [from_json] = gitea.parse(json_headers, BODY)
    assert from_form.model_dump(exclude={"headers"}) == from_json.model_dump(exclude={"headers"})
    assert from_form.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_replay_has_new_delivery_but_same_body_key() -> None:
    [first] = gitea.parse(gitea_headers(BODY, GITEA_SECRET), BODY)
    [replay] = gitea.parse(gitea_headers(BODY, GITEA_SECRET), BODY)
    assert first.dedup_keys[0] != replay.dedup_keys[0]
    assert first.dedup_keys[1] == replay.dedup_keys[1]


def test_missing_delivery_header_keeps_body_key() -> None:
    headers = {k: v for k, v in gitea_headers(BODY, GITEA_SECRET).items() if not k.endswith("-Delivery")}
    [incoming] = gitea.parse(headers, BODY)
    assert incoming.delivery_id is None
    assert incoming.dedup_keys == (f"gitea:body:{hashlib.sha256(BODY).hexdigest()}",)


def test_team_is_none_outside_team_orgs() -> None:
    body = gitea_push(owner="platform", repo="values")
    [incoming] = gitea.parse(gitea_headers(body, GITEA_SECRET), body)
    assert (incoming.team, incoming.repo) == (None, "platform/values")


def test_team_falls_back_to_full_name_when_owner_missing() -> None:
    data = json.loads(gitea_push())
    del data["repository"]["owner"]
    body = gitea_json(data)
    [incoming] = gitea.parse(gitea_headers(body, GITEA_SECRET), body)
    assert incoming.team == "demo"


def test_gogs_event_header_is_enough() -> None:
    headers = {"Content-Type": "application/json", "X-Gogs-Event": "push"}
    [incoming] = gitea.parse(headers, BODY)
    assert incoming.type == "push"


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"Content-Type": "application/json"}, BODY, "missing X-Gitea-Event"),
        ({"X-Gitea-Event": "push"}, b"{not json", "not valid JSON"),
        ({"X-Gitea-Event": "push"}, b"[1, 2]", "JSON object"),
        ({"X-Gitea-Event": "issues"}, b'"text"', "JSON object"),
        ({"X-Gitea-Event": "push"}, b'{"ref": NaN}', "not valid JSON"),
        ({"X-Gitea-Event": "push"}, b"\xff\xfe\xfd", "not valid JSON"),
        ({"X-Gitea-Event": "push"}, b"[" * 100_000, "nested too deeply"),
        ({"X-Gitea-Event": "create"}, gitea_json({"ref": "x", "repository": {"full_name": "a/b"}}), "schema"),
    ],
    ids=[
        "no event header",
        "not JSON",
        "array",
        "string",
        "NaN",
        "not UTF-8",
        "deep nesting",
        "wrong schema",
    ],
)
def test_parse_rejects(headers: Headers, body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as raised:
        gitea.parse(headers, body)
    assert raised.value.status == 400
    assert message in raised.value.message


@pytest.mark.parametrize(
    ("message", "token"),
    [
        ("plain\n", b"NaN"),
        ("N" * 40 + " NINA NaNa\n", b"NaN"),  # more capital Ns before it than are looked at one by one
        ("I" * 40 + " Infinit\n", b"-Infinity"),
    ],
    ids=["NaN", "NaN after many N", "-Infinity after many I"],
)
def test_a_nan_or_infinity_token_anywhere_is_refused(message: str, token: bytes) -> None:
    """Even in a field the model ignores: the stored payload would not be JSON."""
    body = gitea_push(message=message)
    body = body[:-1] + b', "ignored": [1, ' + token + b"]}"
    with pytest.raises(PayloadError) as raised:
        gitea.parse({"X-Gitea-Event": "push", "Content-Type": "application/json"}, body)
    assert "not valid JSON" in raised.value.message
    [incoming] = gitea.parse({"X-Gitea-Event": "push"}, gitea_push(message=message))
    assert incoming.commit is not None, "the same text in a string is fine"


def test_schema_error_detail_has_locations_and_messages_only() -> None:
    data = json.loads(gitea_push())
    data["after"] = 12345
    del data["repository"]["full_name"]
    with pytest.raises(PayloadError) as raised:
        gitea.parse({"X-Gitea-Event": "push"}, gitea_json(data))
    assert raised.value.detail == [
        {"loc": ["after"], "msg": "Input should be a valid string"},
        {"loc": ["repository", "full_name"], "msg": "Field required"},
    ]


EVENTS = st.sampled_from(["push", "create", "delete", "issues", "release", ""])
BODIES = (
    st.binary(max_size=300)
    | json_values().map(lambda v: json.dumps(v).encode())
    | mutated(gitea_push())
    | mutated(gitea_tag_delete())
    | mutated(gitea_create())
    | mutated(gitea_delete())
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=EVENTS, body=BODIES, form=st.booleans())
def test_parse_only_raises_webhook_errors(event: str, body: bytes, form: bool) -> None:
    headers = {"X-Gitea-Event": event, "X-Gitea-Delivery": "d"}
    if form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = gitea_form_body(body) if body.isascii() and b"\x00" not in body else body
    try:
        incomings = gitea.parse(headers, body)
    except WebhookError:
        return
    assert len(incomings) == 1


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(st.sampled_from(SIGNATURE_HEADERS), max_size=4),
    value=st.text(max_size=80),
    form=st.booleans(),
    body=st.binary(max_size=100),
)
def test_verify_only_raises_signature_errors(names: list[str], value: str, form: bool, body: bytes) -> None:
    """verify() runs on unauthenticated input: anything odd must be a 401, never a crash."""
    headers = {name: value for name in names}
    if form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    with pytest.raises(SignatureError):
        gitea.verify(headers, body, GITEA_SECRET)

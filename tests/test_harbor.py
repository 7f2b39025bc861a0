"""Harbor verify/parse, pure: the Authorization table, both payload formats, every event type."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers import harbor
from handlers.errors import PayloadError, SignatureError, WebhookError
from tests.conftest import HARBOR_AUTH
from tests.payloads import (
    CE_ID,
    DIGEST,
    go_json,
    harbor_cloudevent,
    harbor_delete,
    harbor_push,
    harbor_quota,
    harbor_replication,
    harbor_resource,
    harbor_retention,
    harbor_scan,
    json_values,
    mutated,
)
from tests.signing import harbor_headers

Headers = dict[str, str]
IMAGE = "harbor.example.com/team-demo/hello"


def _drop_auth(headers: Headers) -> Headers:
    return {k: v for k, v in headers.items() if k != "Authorization"}


@dataclass(frozen=True)
class AuthCase:
    name: str
    edit: Callable[[Headers], Headers] = lambda h: h
    sent: str = HARBOR_AUTH
    expected: str = HARBOR_AUTH
    cloudevents: bool = False
    error: str | None = None


AUTH_CASES = [
    AuthCase("valid, Default format"),
    AuthCase("valid, CloudEvents format", cloudevents=True),
    AuthCase("valid, header name lower-cased", edit=lambda h: {k.lower(): v for k, v in h.items()}),
    AuthCase("valid raw token (Harbor adds no scheme)", sent="s3cr3t-token", expected="s3cr3t-token"),
    AuthCase("wrong Authorization", sent="Bearer guessed", error="does not match"),
    AuthCase(
        "wrong Authorization, CloudEvents", sent="Bearer guessed", cloudevents=True, error="does not match"
    ),
    AuthCase("scheme missing", sent=HARBOR_AUTH.split(" ", 1)[1], error="does not match"),
    AuthCase("trailing space", sent=HARBOR_AUTH + " ", error="does not match"),
    AuthCase("prefix of the expected value", sent=HARBOR_AUTH[:-1], error="does not match"),
    AuthCase("missing Authorization", edit=_drop_auth, error="missing Authorization"),
    AuthCase("empty Authorization (policy without auth header)", sent="", error="missing Authorization"),
    AuthCase("non-ASCII Authorization", sent="Bearer é", error="does not match"),
    AuthCase("undecodable byte in Authorization", sent="Bearer \udcff", error="does not match"),
    AuthCase("broker without configured value", expected="", error="no Harbor Authorization"),
]


@pytest.mark.parametrize("case", AUTH_CASES, ids=lambda c: c.name)
def test_verify(case: AuthCase) -> None:
    body = harbor_cloudevent() if case.cloudevents else harbor_push()
    headers = case.edit(harbor_headers(case.sent, cloudevents=case.cloudevents))
    if case.error is None:
        harbor.verify(headers, body, case.expected)
        return
    with pytest.raises(SignatureError) as raised:
        harbor.verify(headers, body, case.expected)
    assert raised.value.status == 401
    assert case.error in raised.value.message
    assert HARBOR_AUTH not in raised.value.message
    assert not case.sent or case.sent not in raised.value.message


# --- parse --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseCase:
    name: str
    body: bytes
    type: str
    harbor_type: str  # what the ignore reason must name
    image: str | None = IMAGE
    tag: str | None = "1.4.2"
    digest: str | None = DIGEST
    team: str | None = "demo"
    repo: str | None = "team-demo/hello"

    @property
    def actionable(self) -> bool:
        return self.type == "artifact_push"


PARSE_CASES = [
    ParseCase("push", harbor_push(), "artifact_push", "PUSH_ARTIFACT"),
    ParseCase("pull", harbor_push(event_type="PULL_ARTIFACT"), "artifact_pull", "PULL_ARTIFACT"),
    ParseCase("delete", harbor_delete(), "artifact_delete", "DELETE_ARTIFACT"),
    ParseCase("scan completed", harbor_scan(), "scan", "SCANNING_COMPLETED"),
    ParseCase("scan failed", harbor_scan(event_type="SCANNING_FAILED"), "scan", "SCANNING_FAILED"),
    ParseCase("scan stopped", harbor_scan(event_type="SCANNING_STOPPED"), "scan", "SCANNING_STOPPED"),
    ParseCase("quota exceeded", harbor_quota(), "quota", "QUOTA_EXCEED", image=None),
    ParseCase(
        "quota warning", harbor_quota(event_type="QUOTA_WARNING"), "quota", "QUOTA_WARNING", image=None
    ),
    ParseCase(
        "replication (no resources)",
        harbor_replication(),
        "replication",
        "REPLICATION",
        image=None,
        tag=None,
        digest=None,
        repo=None,
    ),
    ParseCase(
        "tag retention (no resources)",
        harbor_retention(),
        "retention",
        "TAG_RETENTION",
        image=None,
        tag=None,
        digest=None,
        repo=None,
    ),
    ParseCase(
        "unknown Harbor type",
        harbor_push(event_type="ARTIFACT_LABELED"),
        "artifact_labeled",
        "ARTIFACT_LABELED",
    ),
    ParseCase("digest-only push", harbor_push(tag=None), "artifact_push", "PUSH_ARTIFACT", tag=None),
    ParseCase(
        "untagged push reported with the digest as tag",
        harbor_push(resources=[{"digest": DIGEST, "tag": DIGEST, "resource_url": f"{IMAGE}@{DIGEST}"}]),
        "artifact_push",
        "PUSH_ARTIFACT",
        tag=None,
    ),
    ParseCase(
        "nested repository, registry with a port",
        harbor_push(repo="apps/hello", host="harbor.example.com:8443"),
        "artifact_push",
        "PUSH_ARTIFACT",
        image="harbor.example.com:8443/team-demo/apps/hello",
        repo="team-demo/apps/hello",
    ),
    ParseCase(
        "project that is not a team",
        harbor_push(project="library"),
        "artifact_push",
        "PUSH_ARTIFACT",
        image="harbor.example.com/library/hello",
        team=None,
        repo="library/hello",
    ),
    ParseCase(
        "resource_url with a scheme (third-party fixtures)",
        harbor_push(resources=[{"digest": DIGEST, "tag": "1.4.2", "resource_url": f"https://{IMAGE}:1.4.2"}]),
        "artifact_push",
        "PUSH_ARTIFACT",
    ),
    ParseCase(
        "CloudEvents push", harbor_cloudevent(), "artifact_push", "harbor.artifact.pushed (PUSH_ARTIFACT)"
    ),
    ParseCase(
        "CloudEvents scan",
        harbor_cloudevent(event_type="harbor.scan.completed"),
        "scan",
        "harbor.scan.completed (SCANNING_COMPLETED)",
    ),
    ParseCase(
        "CloudEvents delete",
        harbor_cloudevent(event_type="harbor.artifact.deleted"),
        "artifact_delete",
        "harbor.artifact.deleted (DELETE_ARTIFACT)",
    ),
    ParseCase(
        "CloudEvents unknown type",
        harbor_cloudevent(event_type="harbor.artifact.labeled"),
        "artifact_labeled",
        "harbor.artifact.labeled (ARTIFACT_LABELED)",
    ),
]


@pytest.mark.parametrize("case", PARSE_CASES, ids=lambda c: c.name)
def test_parse(case: ParseCase) -> None:
    headers = harbor_headers(HARBOR_AUTH, cloudevents=b"specversion" in case.body)
    [incoming] = harbor.parse(headers, case.body)
    assert (incoming.source, incoming.type) == ("harbor", case.type)
    assert (incoming.image, incoming.tag, incoming.digest) == (case.image, case.tag, case.digest)
    assert (incoming.team, incoming.repo) == (case.team, case.repo)
    assert json.loads(incoming.payload_json) == json.loads(case.body)
    assert "Authorization" not in incoming.headers
    if case.actionable:
        assert incoming.ignore_reason is None
    else:
        assert incoming.ignore_reason == f"Harbor {case.harbor_type} event: only PUSH_ARTIFACT deploys"


def test_default_dedup_key_and_no_delivery_id() -> None:
    [incoming] = harbor.parse(harbor_headers(HARBOR_AUTH), harbor_push(occur_at=1715672090))
    assert incoming.delivery_id is None
    assert incoming.dedup_keys == (f"harbor:PUSH_ARTIFACT:1715672090:{DIGEST}:1.4.2",)


def test_retry_resends_same_keys() -> None:
    """Harbor retries with identical bytes; events without resources fall back to the body hash."""
    for body in (harbor_push(), harbor_replication(), harbor_cloudevent()):
        first = harbor.parse({}, body)
        assert [i.dedup_keys for i in harbor.parse({}, body)] == [i.dedup_keys for i in first]
    [replication] = harbor.parse({}, harbor_replication(occur_at=7))
    assert replication.dedup_keys == (
        f"harbor:REPLICATION:7:body:{hashlib.sha256(harbor_replication(occur_at=7)).hexdigest()}",
    )


def test_several_resources_become_several_events() -> None:
    resources = [
        harbor_resource(tag="1.4.2"),
        harbor_resource(tag="latest"),
        harbor_resource(tag=None, digest="sha256:" + "b" * 64),
    ]
    incomings = harbor.parse({}, harbor_push(resources=resources, occur_at=9))
    assert [(i.tag, i.digest) for i in incomings] == [
        ("1.4.2", DIGEST),
        ("latest", DIGEST),
        (None, "sha256:" + "b" * 64),
    ]
    assert [i.dedup_keys for i in incomings] == [
        (f"harbor:PUSH_ARTIFACT:9:{DIGEST}:1.4.2",),
        (f"harbor:PUSH_ARTIFACT:9:{DIGEST}:latest",),
        ("harbor:PUSH_ARTIFACT:9:sha256:" + "b" * 64 + ":",),
    ]
    assert all(i.ignore_reason is None and i.image == IMAGE for i in incomings)


def test_cloudevents_keys_per_resource_index() -> None:
    resources = [harbor_resource(tag="1.4.2"), harbor_resource(tag="1.4")]
    incomings = harbor.parse({}, harbor_cloudevent(id="ce-1", resources=resources))
    assert [i.dedup_keys for i in incomings] == [("harbor:ce:ce-1:0",), ("harbor:ce:ce-1:1",)]
    assert {i.delivery_id for i in incomings} == {"ce-1"}
    [single] = harbor.parse({}, harbor_cloudevent())
    assert single.delivery_id == CE_ID


def test_push_without_resources_is_ignored() -> None:
    body = go_json({"type": "PUSH_ARTIFACT", "occur_at": 1, "operator": "x", "event_data": {}})
    [incoming] = harbor.parse({}, body)
    assert incoming.ignore_reason == "Harbor PUSH_ARTIFACT event without resources: nothing to deploy"


def test_push_without_resource_url_is_ignored() -> None:
    [incoming] = harbor.parse({}, harbor_push(resources=[{"digest": DIGEST, "tag": "1.4.2"}]))
    assert incoming.image is None
    assert incoming.ignore_reason is not None and "without resource_url" in incoming.ignore_reason


def test_team_of_replication_and_retention() -> None:
    assert [i.team for i in harbor.parse({}, harbor_replication(project="team-ops"))] == ["ops"]
    assert [i.team for i in harbor.parse({}, harbor_retention(project="team-ops"))] == ["ops"]


def test_repository_from_image_when_block_missing() -> None:
    body = go_json(
        {"type": "PUSH_ARTIFACT", "occur_at": 1, "event_data": {"resources": [harbor_resource()]}},
    )
    [incoming] = harbor.parse({}, body)
    assert (incoming.team, incoming.repo, incoming.image) == ("demo", "team-demo/hello", IMAGE)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{IMAGE}:1.4.2", (IMAGE, "1.4.2", None)),
        (f"{IMAGE}@{DIGEST}", (IMAGE, None, DIGEST)),
        ("harbor:8443/p/r:v1", ("harbor:8443/p/r", "v1", None)),
        ("harbor:8443/p/r", ("harbor:8443/p/r", None, None)),
        (f"http://{IMAGE}:1", (IMAGE, "1", None)),
    ],
)
def test_split_resource_url(url: str, expected: tuple[str, str | None, str | None]) -> None:
    assert harbor.split_resource_url(url) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not valid JSON"),
        (b"null", "JSON object"),
        (go_json({"occur_at": 1}), "schema"),
        (go_json({"type": "PUSH_ARTIFACT", "occur_at": "yesterday"}), "schema"),
        (go_json({"type": "PUSH_ARTIFACT", "occur_at": 1, "event_data": {"resources": {}}}), "schema"),
        (go_json({"specversion": "1.0", "type": "harbor.artifact.pushed"}), "schema"),
    ],
    ids=[
        "empty",
        "null",
        "no type",
        "occur_at not a number",
        "resources not a list",
        "CloudEvent without id",
    ],
)
def test_parse_rejects(body: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as raised:
        harbor.parse({}, body)
    assert message in raised.value.message


BODIES = (
    st.binary(max_size=300)
    | json_values().map(lambda v: json.dumps(v).encode())
    | mutated(harbor_push())
    | mutated(harbor_scan())
    | mutated(harbor_replication())
    | mutated(harbor_cloudevent())
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, cloudevents=st.booleans())
def test_parse_only_raises_webhook_errors(body: bytes, cloudevents: bool) -> None:
    try:
        incomings = harbor.parse(harbor_headers(HARBOR_AUTH, cloudevents=cloudevents), body)
    except WebhookError:
        return
    assert len(incomings) >= 1

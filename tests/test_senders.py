"""The dispatch table: each entry verifies and parses its own sender's deliveries through one signature."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.settings import Settings
from handlers.errors import ContentTypeError, SignatureError
from handlers.senders import SENDERS
from tests.conftest import DRONE_SECRET, GITEA_SECRET, HARBOR_AUTH
from tests.payloads import drone_build, gitea_push, harbor_cloudevent
from tests.signing import drone_headers, gitea_headers, harbor_headers

SENT = datetime(2024, 5, 14, 7, 30, 31, tzinfo=UTC)
SECRETS = {"gitea": GITEA_SECRET, "drone": DRONE_SECRET, "harbor": HARBOR_AUTH}
DELIVERIES = {
    "gitea": (gitea_headers(gitea_push(), GITEA_SECRET), gitea_push(), "push"),
    "drone": (drone_headers(drone_build(), DRONE_SECRET, date=SENT), drone_build(), "build"),
    "harbor": (harbor_headers(HARBOR_AUTH, cloudevents=True), harbor_cloudevent(), "artifact_push"),
}


def test_table_covers_the_three_senders_and_their_settings() -> None:
    assert set(SENDERS) == {"gitea", "drone", "harbor"}
    for name, sender in SENDERS.items():
        assert sender.name == name
        assert sender.secret_setting in Settings.model_fields


@pytest.mark.parametrize("name", sorted(SENDERS))
def test_dispatch(name: str) -> None:
    sender = SENDERS[name]
    headers, body, type_ = DELIVERIES[name]
    sender.check_content_type(headers)
    sender.verify(headers, body, SECRETS[name], now=SENT.timestamp(), max_skew_s=300)
    assert [i.type for i in sender.parse(headers, body)] == [type_]
    with pytest.raises(SignatureError):
        sender.verify(headers, body, "another-secret", now=SENT.timestamp(), max_skew_s=300)
    with pytest.raises(ContentTypeError):
        sender.check_content_type({"Content-Type": "text/plain"})


CONTENT_TYPES = [
    ("gitea", "application/json", True),
    ("gitea", "application/json; charset=utf-8", True),
    ("gitea", "Application/JSON", True),
    ("gitea", "application/x-www-form-urlencoded", True),
    ("gitea", "application/cloudevents+json", False),
    ("drone", "application/json", True),
    ("drone", "application/json;charset=UTF-8", True),
    ("drone", "application/x-www-form-urlencoded", False),
    ("harbor", "application/json", True),
    ("harbor", "application/cloudevents+json", True),
    ("harbor", "application/cloudevents+json; charset=utf-8", True),
    ("harbor", "application/cloudevents-batch+json", False),
    *[(name, bad, False) for name in ("gitea", "drone", "harbor") for bad in ("text/plain", "", None)],
]


@pytest.mark.parametrize(("name", "content_type", "ok"), CONTENT_TYPES)
def test_content_type(name: str, content_type: str | None, ok: bool) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    check = SENDERS[name].check_content_type
    if ok:
        check(headers)
        return
    with pytest.raises(ContentTypeError) as raised:
        check(headers)
    assert raised.value.status == 415
    assert "application/json" in raised.value.message

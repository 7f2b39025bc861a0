"""The intake stores a new event as NewEvent composes it, without building the Event it stands for: its
texts must be that Event's, for every kind of delivery each sender makes (captured ones included), and
whatever text a sender puts in the fields (tests/fuzz_parsers.py checks the read-back on any body)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from handlers import drone, gitea, harbor
from handlers.models import Event, EventFields, Incoming, NewEvent
from tests import payloads
from tests.conftest import DRONE_SECRET, GITEA_SECRET, HARBOR_AUTH
from tests.signing import drone_headers, gitea_headers, harbor_headers
from tests.test_real_fixtures import DRONE_DIR, GITEA_DIR, GITEA_EXPECTED

RECEIVED = datetime(2026, 11, 27, 13, 10, 47, 877106, tzinfo=UTC)


def from_gitea(body: bytes, event: str = "push") -> list[Incoming]:
    return gitea.parse(gitea_headers(body, GITEA_SECRET, event=event, delivery="d-1"), body)


def from_drone(body: bytes) -> list[Incoming]:
    return drone.parse(drone_headers(body, DRONE_SECRET), body)


def from_harbor(body: bytes) -> list[Incoming]:
    return harbor.parse(harbor_headers(HARBOR_AUTH), body)


def deliveries() -> dict[str, list[Incoming]]:
    made = {
        "gitea push": from_gitea(payloads.gitea_push()),
        "gitea push, unicode and quotes": from_gitea(
            payloads.gitea_push(repo="héllo-\u2603", message='fix "quotes" \\ and \u00e9\n')
        ),
        "gitea tag push": from_gitea(payloads.gitea_tag_push()),
        "gitea test delivery (ignored)": from_gitea(payloads.gitea_test_delivery()),
        "gitea create (ignored)": from_gitea(payloads.gitea_create(), event="create"),
        "gitea delete (ignored)": from_gitea(payloads.gitea_delete(), event="delete"),
        "gitea unknown event (ignored, its name in the reason)": from_gitea(
            payloads.gitea_push(), event='wiki"\u00e9\\'
        ),
        "drone build": from_drone(payloads.drone_build()),
        "drone running build (ignored)": from_drone(payloads.drone_build(status="running")),
        "harbor push, three resources": from_harbor(
            payloads.harbor_push(
                resources=[
                    payloads.harbor_resource(tag=f"1.4.{n}", digest=f"sha256:{n:064x}") for n in range(3)
                ]
            )
        ),
        "harbor scan": from_harbor(payloads.harbor_scan()),
    }
    for name, (event, *_rest) in GITEA_EXPECTED.items():
        made[f"captured gitea {name}"] = from_gitea((GITEA_DIR / name).read_bytes(), event=event)
    for path in sorted(DRONE_DIR.glob("*.json")):
        made[f"captured drone {path.name}"] = from_drone(path.read_bytes())
    return made


DELIVERIES = deliveries()


def the_event(new: NewEvent) -> Event:
    """The Event `new` stands for, built and validated the long way."""
    item = new.incoming
    return Event(
        id=new.id,
        received_at=new.received_at,
        updated_at=new.received_at,
        status=item.initial_status,
        reason=item.ignore_reason,
        headers=item.headers,
        payload=json.loads(item.payload_json),
        **{name: getattr(item, name) for name in EventFields.model_fields},
    )


@pytest.mark.parametrize("name", list(DELIVERIES))
def test_a_new_events_texts_are_those_of_the_event_it_stands_for(name):
    events = DELIVERIES[name]
    assert events, "every case parses to at least one event"
    for offset, item in enumerate(events):
        new = NewEvent(item, f"01KBZ0000000000000000000{offset:02d}", RECEIVED)
        event = the_event(new)

        assert new.summary_json() == event.summary_json()
        record = new.record_json()
        assert Event.model_validate_json(record) == event
        assert json.loads(record) == json.loads(event.record_json())
        # What broker/store.py indexes it by.
        for field in ("source", "type", "team", "repo", "status"):
            assert getattr(new, field) == getattr(event, field)


def test_the_cases_cover_ignored_events_with_reasons_and_every_sender():
    items = [item for events in DELIVERIES.values() for item in events]
    assert {item.source for item in items} == {"gitea", "drone", "harbor"}
    reasons = [item.ignore_reason for item in items if item.ignore_reason]
    assert any('"' in reason for reason in reasons), "a reason quoting what the sender sent"
    assert any(item.build is not None for item in items)

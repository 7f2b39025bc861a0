"""Event ids: ULIDs from python-ulid's generator, their text written by broker/store.py's own encoder."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from ulid import ULID

from broker.store import assign_event_ids, ulid_text


def test_the_text_is_python_ulids_for_any_value():
    values = [bytes(16), b"\xff" * 16, *(os.urandom(16) for _ in range(2000))]
    for value in values:
        assert ulid_text(value) == str(ULID(value))


def test_a_deliverys_ids_are_its_moment_a_millisecond_apart_and_sort_in_order():
    at = datetime(2026, 11, 27, 13, 10, 47, 877106, tzinfo=UTC)
    ids = assign_event_ids(at, 5)
    stamps = [ULID.from_str(event_id).milliseconds for event_id in ids]
    assert stamps == [int(at.timestamp() * 1000) + offset for offset in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_ids_made_in_one_millisecond_keep_the_order_they_were_made_in():
    at = datetime.now(UTC)
    ids = [assign_event_ids(at, 1)[0] for _ in range(200)]
    assert ids == sorted(ids) and len(set(ids)) == 200

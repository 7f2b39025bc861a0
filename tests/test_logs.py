"""The JSON log lines: one object per line, the event id on every line logged about an event."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from broker import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO")
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_names_the_event_given_by_the_call(captured: io.StringIO) -> None:
    logging.getLogger("broker.test").info(
        "accepted %s", "gitea", extra={"event_id": "01EVENT", "source": "gitea"}
    )
    (line,) = lines(captured)
    assert line["msg"] == "accepted gitea"
    assert line["event_id"] == "01EVENT"
    assert line["source"] == "gitea"
    assert line["level"] == "info"
    assert line["logger"] == "broker.test"


def test_a_line_names_the_event_being_handled(captured: io.StringIO) -> None:
    log = logging.getLogger("broker.test")
    with logs.event_context("01CONTEXT"):
        log.warning("retrying", extra={"status": "failed"})
    log.info("between events")
    first, second = lines(captured)
    assert (first["event_id"], first["status"], first["level"]) == ("01CONTEXT", "failed", "warning")
    assert "event_id" not in second


def test_exceptions_go_in_the_line(captured: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("broker.test").exception("job failed")
    (line,) = lines(captured)
    assert "ValueError: boom" in str(line["exc"])


@pytest.mark.parametrize(
    "created", [0.0, 1_700_000_000.0, 1_700_000_000.25, 1_700_000_000.999, 1_800_000_000.5004]
)
def test_timestamps_are_iso_utc_to_the_millisecond(created: float) -> None:
    formatter = logs.JsonFormatter()
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert formatter.timestamp(created) == expected
    # The date part is cached per second: the next second must not reuse it.
    later = datetime.fromtimestamp(created + 1, UTC).isoformat(timespec="milliseconds")
    assert formatter.timestamp(created + 1) == later

"""Structured JSON logs. The event being handled is carried in a context variable, so every line logged
while handling it (web request or worker job, any module) names its event id without passing it around."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic_core import to_json

from broker.utc_text import SecondText

current_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)


@contextmanager
def event_context(event_id: str | None) -> Iterator[None]:
    token = current_event_id.set(event_id)
    try:
        yield
    finally:
        current_event_id.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = SecondText()

    def timestamp(self, created: float) -> str:
        """`created` in ISO 8601 UTC to the millisecond."""
        second, fraction = divmod(created, 1)
        return f"{self._seconds(int(second))}.{int(fraction * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        given = record.__dict__  # what `extra=` added
        # Named by the call (extra={"event_id": ...}) or else by the context.
        event_id = given.get("event_id") or current_event_id.get()
        if event_id:
            line["event_id"] = event_id
        for extra in ("source", "status", "reason", "job_id"):
            if extra in given:
                line[extra] = given[extra]
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # pydantic-core's encoder: a fifth of json.dumps's cost (which builds an encoder per call given
        # `default`), and UTF-8 as it is rather than \u escapes.
        return to_json(line, fallback=str).decode()


def configure(level: str = "INFO") -> None:
    # The JSON lines carry none of these, and the intake logs a line per webhook: skip collecting them
    # (the logging docs' "Optimization" section).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the caller's file and line: the docs name this private attribute for it
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our own intake line for every webhook.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

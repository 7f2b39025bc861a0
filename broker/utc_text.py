"""UTC timestamps as text, cheaply: the intake writes two for every webhook (its log line, its rq job),
and strftime or isoformat cost more than the rest of either."""

from __future__ import annotations

from datetime import UTC, datetime


class SecondText:
    """A UTC second's date and time of day (`2026-11-27T06:05:04`), formatted once per second. The pair
    is swapped in as one reference, so a reader on another thread never sees one second's text under
    another's number."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, second: int) -> str:
        cached = self._cached
        if cached[0] != second:
            cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
            self._cached = cached
        return cached[1]

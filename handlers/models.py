"""The data that crosses the pure/I-O boundary: what a parser extracts from a delivery (`Incoming`), the
stored event record (`Event`, served as-is by /api/v1/events/{id}; `NewEvent`, the record the intake
writes for a new one), and the decisions recorded on it (`Action`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from handlers.notices import Notice

Source = Literal["gitea", "drone", "harbor"]
EventStatus = Literal["queued", "processing", "done", "ignored", "failed", "dead"]
FINAL_STATUSES: frozenset[str] = frozenset({"done", "ignored", "dead"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def team_id(owner: str | None) -> str | None:
    """Teams own `team-<id>` orgs, projects and namespaces; the broker keys everything on `<id>`."""
    if owner and owner.startswith("team-") and len(owner) > len("team-"):
        return owner[len("team-") :]
    return None


class BuildInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int | None = None
    number: int | None = None
    status: str | None = None
    link: str | None = None


class EventFields(BaseModel):
    """What a delivery says about itself: the fields a parser extracts and the stored record keeps."""

    source: Source
    type: str
    delivery_id: str | None = None
    team: str | None = None
    repo: str | None = None
    ref: str | None = None
    commit: str | None = None
    image: str | None = None
    tag: str | None = None
    digest: str | None = None
    build: BuildInfo | None = None


class Incoming(EventFields):
    """One event extracted from one authentic delivery, before it has an id. A Harbor delivery with
    several resources yields several. `dedup_keys`: the event is a duplicate if any key was seen.
    `payload_json`: the delivery's JSON object as it was sent (and parsed: it is well-formed), stored in
    the record as it is rather than rebuilt from Python objects."""

    model_config = ConfigDict(frozen=True)

    dedup_keys: tuple[str, ...]
    ignore_reason: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    payload_json: str = "{}"

    @property
    def initial_status(self) -> EventStatus:
        return "ignored" if self.ignore_reason is not None else "queued"


class Action(BaseModel):
    """One decision or side effect recorded on an event: what was considered (`target`), what the
    broker decided, and what came of it."""

    model_config = ConfigDict(frozen=True)

    kind: str
    target: str
    decision: str
    result: str | None = None
    detail: Any = None
    at: datetime = Field(default_factory=utcnow)


class Event(EventFields):
    """The stored record, served as-is by /api/v1/events/{id}."""

    id: str
    received_at: datetime
    status: EventStatus = "queued"
    reason: str | None = None
    attempts: int = 0
    actions: list[Action] = Field(default_factory=list)
    deployment_id: str | None = None
    updated_at: datetime | None = None
    # Last, so a reader of the JSON sees the decisions before the (large) body; `record_json` writes
    # them after the rest.
    headers: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any] = Field(default_factory=dict)

    def summary_json(self) -> str:
        """The record without its bulky parts (headers, payload): what the live tail carries."""
        return self.model_dump_json(exclude={"headers", "payload"})

    def record_json(self, *, summary: str | None = None) -> str:
        """The stored record: the summary (this event's summary_json, when the caller has it: one
        serialisation instead of two) closed by the headers and the payload."""
        head = self.summary_json() if summary is None else summary
        return _closed_record(head, self.headers, to_json(self.payload).decode())


def _closed_record(summary: str, headers: dict[str, str], payload_json: str) -> str:
    """A record's JSON from its summary's: the bulky parts go last."""
    return f'{summary[:-1]},"headers":{to_json(headers).decode()},"payload":{payload_json}}}'


_EVENT_FIELDS = EventFields.__pydantic_serializer__


@dataclass(frozen=True, slots=True)
class NewEvent:
    """The event an authentic delivery's `incoming` starts as, as the intake stores it. Its texts are those
    of the Event it stands for (the delivery's fields and headers, `status` and `reason` from the parse,
    `updated_at` = `received_at`, the rest at their defaults), composed without building that Event:
    validating one and serialising it back cost the intake more than the rest of the record, and the
    record is only ever read back as an Event. Its payload is the sender's own JSON text, never turned
    into Python objects and back. tests/test_models.py holds the texts equal to the Event's for every kind
    of delivery."""

    incoming: Incoming
    id: str
    received_at: datetime

    @property
    def status(self) -> EventStatus:
        return self.incoming.initial_status

    # What broker/store.py indexes an event by, besides its status.
    @property
    def source(self) -> Source:
        return self.incoming.source

    @property
    def type(self) -> str:
        return self.incoming.type

    @property
    def team(self) -> str | None:
        return self.incoming.team

    @property
    def repo(self) -> str | None:
        return self.incoming.repo

    def summary_json(self) -> str:
        # Serialised by EventFields' own serializer: an Incoming's other fields stay out, as pydantic
        # serialises by the declared type.
        fields = _EVENT_FIELDS.to_json(self.incoming).decode()
        at = to_json(self.received_at).decode()
        reason = to_json(self.incoming.ignore_reason).decode()
        return (
            f'{fields[:-1]},"id":"{self.id}","received_at":{at},"status":"{self.status}","reason":{reason},'
            f'"attempts":0,"actions":[],"deployment_id":null,"updated_at":{at}}}'
        )

    def record_json(self, *, summary: str | None = None) -> str:
        head = self.summary_json() if summary is None else summary
        return _closed_record(head, self.incoming.headers, self.incoming.payload_json)


class Outcome(BaseModel):
    """What processing one event came to: its final status, the reason in one line, every decision taken,
    the deployment record it belongs to, and the notifications it raises."""

    status: Literal["done", "ignored"]
    reason: str
    actions: list[Action] = Field(default_factory=list)
    deployment_id: str | None = None
    notices: list[Notice] = Field(default_factory=list)

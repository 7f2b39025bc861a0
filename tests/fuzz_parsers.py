"""Coverage-guided fuzzing of every sender's content-type check, verifier and parser, and of turning what
they return into what the broker stores (the event record and the spool line).

    python -m tests.fuzz_parsers -max_total_time=20 <corpus dir>     (atheris, libFuzzer flags)

Input layout: byte 0 picks the sender, byte 1 the content type, byte 2 the event header, the rest is the
body. Each input is checked as the sender signs it (so the parser is reached) and with its signature
header fuzzed. Allowed outcomes: success, a WebhookError (the 4xx the web layer answers), or, when
storing, PydanticSerializationError (which the web layer answers 400). Anything else is a crash.
tests/test_fuzz_parsers.py runs this for a bounded time in CI, or the same target under hypothesis where
atheris is not installed."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from pydantic_core import PydanticSerializationError

from tests.signing import drone_headers, gitea_headers, gitea_signature, harbor_headers

# handlers/ and broker/ are imported inside the functions, so that `main` can import them first under
# atheris' instrumentation (instrumenting everything already loaded instead costs half a minute).

SECRET = "fuzz-secret"
HARBOR_AUTH = "Bearer fuzz-token"
SOURCES = ("gitea", "drone", "harbor")
CONTENT_TYPES = (
    "application/json",
    "application/x-www-form-urlencoded",
    "application/cloudevents+json",
    "application/json; charset=utf-8",
    "text/plain",
)
EVENTS = ("push", "create", "delete", "issues", "build", "repo", "")
NOW = 1_715_672_400.0


def headers_for(source: str, content_type: str, event: str, body: bytes) -> dict[str, str]:
    """What the sender would put on the wire for `body`, with the fuzzed content type and event."""
    from handlers.errors import WebhookError
    from handlers.gitea import json_bytes

    if source == "gitea":
        headers = gitea_headers(body, SECRET, event=event, content_type=content_type)
        if content_type.startswith("application/x-www-form-urlencoded"):
            # Gitea signs the JSON in the `payload` field, not the form body.
            try:
                signed = gitea_signature(json_bytes(headers, body), SECRET)
            except WebhookError:
                signed = ""
            headers["X-Gitea-Signature"] = signed
        return headers
    if source == "drone":
        return {
            **drone_headers(body, SECRET, date=datetime.fromtimestamp(NOW, UTC), event=event),
            "Content-Type": content_type,
        }
    return {**harbor_headers(HARBOR_AUTH), "Content-Type": content_type}


def exercise(source: str, headers: dict[str, str], body: bytes) -> None:
    """Run one delivery through everything the intake does before Redis; raise only on a real bug."""
    from broker.spool import SpoolEntry
    from handlers.errors import WebhookError
    from handlers.models import Event, NewEvent
    from handlers.senders import SENDERS

    sender = SENDERS[source]
    secret = HARBOR_AUTH if source == "harbor" else SECRET
    try:
        sender.check_content_type(headers)
        sender.verify(headers, body, secret, now=NOW, max_skew_s=300)
    except WebhookError:
        pass
    try:
        events = sender.parse(headers, body)
    except WebhookError:
        return
    at = datetime.fromtimestamp(NOW, UTC)
    for offset, item in enumerate(events):
        try:
            new = NewEvent(item, f"01J0000000000000000000{offset:04d}", at)
            summary = new.summary_json()
            stored = Event.model_validate_json(new.record_json(summary=summary))
            assert stored.payload == json.loads(item.payload_json)
            assert stored.summary_json() == summary, "the intake's record reads back as it was composed"
            SpoolEntry(received_at=at, event_ids=["x"], events=[item]).line()
        except PydanticSerializationError:
            pass  # answered 400 by the web layer


def split(data: bytes) -> tuple[str, dict[str, str], bytes]:
    padded = data + b"\0\0\0"
    source = SOURCES[padded[0] % len(SOURCES)]
    content_type = CONTENT_TYPES[padded[1] % len(CONTENT_TYPES)]
    event = EVENTS[padded[2] % len(EVENTS)]
    body = data[3:]
    return source, headers_for(source, content_type, event, body), body


def one_input(data: bytes) -> None:
    source, headers, body = split(data)
    exercise(source, headers, body)
    # The same body with a signature header that does not match: only verification changes.
    headers = dict(headers)
    for name in ("X-Gitea-Signature", "Signature", "Authorization"):
        if name in headers:
            headers[name] = body[:64].decode("latin-1")
    exercise(source, headers, body)


def seeds() -> list[bytes]:
    """Valid deliveries of each sender, in the input layout."""
    from tests import payloads

    return [
        b"\0\0\0" + payloads.gitea_push(),
        b"\0\0\1" + payloads.gitea_create(ref="feature/x", ref_type="branch"),
        b"\0\0\0" + payloads.gitea_tag_delete(),
        b"\1\0\4" + payloads.drone_build(),
        b"\1\0\4" + payloads.drone_build(status="running"),
        b"\2\0\0" + payloads.harbor_push(),
        b"\2\2\0" + payloads.harbor_cloudevent(),
        b"\2\0\0" + payloads.harbor_scan(),
    ]


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["handlers"]):
        import handlers.senders  # noqa: F401  (and through it every sender module)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

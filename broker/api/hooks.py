"""POST /hooks/{gitea|drone|harbor}: the intake. Checks run in DESIGN.md's order — size cap (413),
content type (415), authenticity (401), shape (400) — and only then is anything written. The answer
is sent after the event, its log entry and its job are durable in Redis, or, while Redis is unreachable,
after the delivery is fsync'd to the local spool (broker/spool_drain.py). Before any of it, the in-flight
bounds shed load with 503 + Retry-After (broker/intake_limits.py), and a body that trickles in slower
than BROKER_BODY_READ_TIMEOUT_S gets 408 and a closed connection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler  # the 100 Continue writer, kept as is
from pydantic_core import PydanticSerializationError, to_json

from broker import keys, metrics
from broker.api.errors import json_error
from broker.intake_limits import LIMITER
from broker.settings import Settings
from broker.spool_drain import INTAKE, CannotPersist, Persisted
from handlers.errors import ContentTypeError, PayloadError, WebhookError
from handlers.models import Incoming
from handlers.senders import SENDERS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


class TooLarge(WebhookError):
    status = 413


class BodyTimeout(WebhookError):
    status = 408


async def read_capped(request: web.Request, cap: int, timeout_s: float) -> bytes:
    """Read the whole body, refusing to buffer more than `cap` bytes whatever Content-Length claims, and
    giving up on a sender that has not sent it all within `timeout_s` (a slowloris holds a slot)."""
    content = request.content
    # Usually the whole body came with the headers: it is taken without arming a timer.
    chunks = [content.read_nowait(cap + 1)]
    size = len(chunks[0])
    if size <= cap and not content.at_eof():
        try:
            async with asyncio.timeout(timeout_s):
                while size <= cap and (chunk := await content.read(cap + 1 - size)):
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise BodyTimeout(f"the body was not received within {timeout_s:g} s") from None
    if size > cap:
        raise TooLarge(f"body is over the {cap}-byte limit")
    return b"".join(chunks)


def check_declared_size(request: web.Request, cap: int) -> None:
    if request.content_length is not None and request.content_length > cap:
        raise TooLarge(f"body of {request.content_length} bytes is over the {cap}-byte limit")


def check_encoding(headers: Mapping[str, str]) -> None:
    # Compressed bodies are refused outright: no sender needs them and they invite decompression bombs.
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ContentTypeError(f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed")


async def authentic_events(
    request: web.Request, source: str, settings: Settings, secret: str
) -> list[Incoming]:
    sender = SENDERS[source]
    check_declared_size(request, settings.max_body_bytes)
    # Before reading: aiohttp would otherwise inflate a compressed body while we read it.
    check_encoding(request.headers)
    body = await read_capped(request, settings.max_body_bytes, settings.body_read_timeout_s)
    sender.check_content_type(request.headers)
    sender.verify(request.headers, body, secret, now=time.time(), max_skew_s=settings.drone_max_skew_s)
    incoming = sender.parse(request.headers, body)
    check_copies(len(incoming), len(body), settings.max_body_bytes)
    return incoming


def check_copies(events: int, size: int, cap: int) -> None:
    """Each event keeps its delivery's whole body, so a Harbor delivery listing many resources would be
    stored that many times over: a small body with thousands of resources, or a big one with a few, could
    take the web tier's memory and Redis with it. The copies together get the body's cap."""
    if events > 1 and events * size > cap:
        raise TooLarge(
            f"a delivery of {events} events would store its {size}-byte body {events} times, "
            f"over the {cap}-byte limit; send fewer resources per delivery"
        )


def answer(persisted: Persisted, incoming: list[Incoming]) -> web.Response:
    accepted = persisted.accepted
    if accepted.duplicate_of:
        return json_answer({"event_id": accepted.duplicate_of, "status": "duplicate"}, 200)
    body: dict[str, object] = {"event_id": accepted.event_ids[0], "status": accepted.statuses[0]}
    reason = incoming[0].ignore_reason
    if reason:
        body["reason"] = reason
    if len(accepted.event_ids) > 1:
        body["event_ids"] = accepted.event_ids
        body["statuses"] = accepted.statuses
    if persisted.spooled:
        body["spooled"] = True
    return json_answer(body, 202)


def json_answer(body: dict[str, object], status: int) -> web.Response:
    """web.json_response's answer at under half its cost (pydantic-core's encoder, not json.dumps): it is
    sent for every webhook."""
    return web.Response(body=to_json(body), status=status, content_type="application/json", charset="utf-8")


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` lets a sender wait for a go-ahead before it sends the body: an over-cap
    Content-Length is refused right there (413), else aiohttp's go-ahead is sent. Any other expectation
    gets a JSON 417 (aiohttp's own is text/plain: expect handlers run outside the error middleware)."""
    if request.headers.get("Expect", "").strip().lower() != "100-continue":
        return web.json_response({"error": "only 'Expect: 100-continue' is understood"}, status=417)
    try:
        check_declared_size(request, request.app[keys.SETTINGS].max_body_bytes)
    except TooLarge as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    await _default_expect_handler(request)
    return None


@routes.post(r"/hooks/{source:gitea|drone|harbor}", expect_handler=expect_continue)
async def receive(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    source = request.match_info["source"]
    settings = request.app[keys.SETTINGS]
    secret = settings.secret_for(source)
    if secret is None:
        metrics.REJECTIONS.labels(source, "disabled").inc()
        raise json_error(
            web.HTTPServiceUnavailable,
            f"the {source} endpoint is disabled: BROKER_{SENDERS[source].secret_setting.upper()} is not set",
        )
    limiter = request.app[LIMITER]
    declared = request.content_length
    weight = settings.max_body_bytes if declared is None else min(declared, settings.max_body_bytes)
    if not limiter.try_acquire(weight):
        metrics.REJECTIONS.labels(source, "503").inc()
        shed = web.json_response(
            {"error": "too many webhooks in flight; retry shortly"},
            status=503,
            headers={"Retry-After": str(settings.shed_retry_after_s)},
        )
        return await hang_up(request, shed)
    try:
        return await handle(request, source, settings, secret, started)
    finally:
        limiter.release(weight)


async def handle(
    request: web.Request, source: str, settings: Settings, secret: str, started: float
) -> web.StreamResponse:
    try:
        incoming = await authentic_events(request, source, settings, secret)
    except WebhookError as exc:
        return await refuse(request, source, exc)
    try:
        persisted = await request.app[INTAKE].persist(incoming, datetime.now(UTC))
    except CannotPersist as exc:
        metrics.REJECTIONS.labels(source, "503").inc()
        log.error("cannot persist %s webhook: %s", source, exc.message, extra={"source": source})
        raise json_error(
            web.HTTPServiceUnavailable, exc.message, headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    except PydanticSerializationError as exc:
        # Valid JSON the store cannot keep: an unpaired \ud800 escape (or such bytes in a recorded header)
        # is no UTF-8, and nesting beyond pydantic's serialisation depth. A bad body, not a failure.
        return await refuse(
            request, source, PayloadError(f"the delivery cannot be stored: {unstorable(exc)}")
        )
    accepted = persisted.accepted
    outcome = "duplicate" if accepted.duplicate_of else accepted.statuses[0]
    count, seconds = metrics.answered(source, incoming[0].type, outcome)
    count.inc(len(accepted.event_ids))
    seconds.observe(time.perf_counter() - started)
    where = " (spooled: Redis unavailable)" if persisted.spooled else ""
    context = {"source": source, "event_id": accepted.event_ids[0]}
    log.info("accepted %s %s: %s%s", source, incoming[0].type, outcome, where, extra=context)
    return answer(persisted, incoming)


def unstorable(exc: PydanticSerializationError) -> str:
    text = str(exc)
    if "surrogate" in text:
        return "it holds text that is not valid UTF-8 (an unpaired surrogate)"
    if "depth" in text:
        return "it is nested too deeply"
    return "it holds values that cannot be serialised"


async def refuse(request: web.Request, source: str, exc: WebhookError) -> web.StreamResponse:
    """Refused bodies are counted and logged without their content, and never stored."""
    metrics.REJECTIONS.labels(source, str(exc.status)).inc()
    log.info("refused %s webhook: %s", source, exc.message, extra={"source": source, "status": exc.status})
    body = {"error": exc.message} if exc.detail is None else {"error": exc.message, "detail": exc.detail}
    response = web.json_response(body, status=exc.status)
    if not request.content.is_eof():
        # Refused before the body was all read (413, 415 for compression, 408): hang up.
        return await hang_up(request, response)
    return response


async def hang_up(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Answer, then close the connection without reading the rest of the body. aiohttp would otherwise
    keep reading (and inflating, for a compressed body) what the sender still sends for up to 10 s."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response

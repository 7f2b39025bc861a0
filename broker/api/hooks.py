"""POST /hooks/{gitea|drone|harbor}: the intake. Checks run in DESIGN.md's order — size cap (413),
content type (415), authenticity (401), shape (400) — and only then is anything written. The answer
is sent after the event, its log entry and its job are durable in Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from aiohttp import web
from redis.exceptions import RedisError

from broker import keys, metrics
from broker.api.errors import json_error
from broker.logs import event_context
from broker.settings import Settings
from broker.store import Accepted
from handlers.errors import ContentTypeError, WebhookError
from handlers.models import Incoming
from handlers.senders import SENDERS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


class TooLarge(WebhookError):
    status = 413


async def read_capped(request: web.Request, cap: int) -> bytes:
    """Read the body once, refusing to buffer more than `cap` bytes whatever Content-Length claims."""
    body = await request.content.read(cap + 1)
    if len(body) > cap:
        raise TooLarge(f"body is over the {cap}-byte limit")
    return body


def check_encoding(headers: Mapping[str, str]) -> None:
    # Compressed bodies are refused outright: no sender needs them and they invite decompression bombs.
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ContentTypeError(f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed")


async def authentic_events(
    request: web.Request, source: str, settings: Settings, secret: str
) -> list[Incoming]:
    sender = SENDERS[source]
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise TooLarge(
            f"body of {request.content_length} bytes is over the {settings.max_body_bytes}-byte limit"
        )
    # Before reading: aiohttp would otherwise inflate a compressed body while we read it.
    check_encoding(request.headers)
    body = await read_capped(request, settings.max_body_bytes)
    sender.check_content_type(request.headers)
    sender.verify(request.headers, body, secret, now=time.time(), max_skew_s=settings.drone_max_skew_s)
    return sender.parse(request.headers, body)


def answer(accepted: Accepted, incoming: list[Incoming]) -> web.Response:
    if accepted.duplicate_of:
        return web.json_response({"event_id": accepted.duplicate_of, "status": "duplicate"}, status=200)
    body: dict[str, object] = {"event_id": accepted.event_ids[0], "status": accepted.statuses[0]}
    reason = incoming[0].ignore_reason
    if reason:
        body["reason"] = reason
    if len(accepted.event_ids) > 1:
        body["event_ids"] = accepted.event_ids
        body["statuses"] = accepted.statuses
    return web.json_response(body, status=202)


@routes.post(r"/hooks/{source:gitea|drone|harbor}")
async def receive(request: web.Request) -> web.Response:
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
    try:
        incoming = await authentic_events(request, source, settings, secret)
    except WebhookError as exc:
        # Refused bodies are counted and logged without their content, and never stored.
        metrics.REJECTIONS.labels(source, str(exc.status)).inc()
        log.info(
            "refused %s webhook: %s", source, exc.message, extra={"source": source, "status": exc.status}
        )
        body = {"error": exc.message} if exc.detail is None else {"error": exc.message, "detail": exc.detail}
        return web.json_response(body, status=exc.status)
    try:
        accepted = await request.app[keys.STORE].accept(incoming)
    except RedisError as exc:
        metrics.REDIS_ERRORS.labels("intake").inc()
        metrics.REJECTIONS.labels(source, "503").inc()
        log.error("cannot persist %s webhook: %s", source, exc, extra={"source": source})
        raise json_error(
            web.HTTPServiceUnavailable, "cannot persist the event right now; retry later"
        ) from None
    outcome = "duplicate" if accepted.duplicate_of else accepted.statuses[0]
    metrics.WEBHOOKS.labels(source, incoming[0].type, outcome).inc(len(accepted.event_ids))
    metrics.INTAKE_SECONDS.labels(source).observe(time.perf_counter() - started)
    with event_context(accepted.event_ids[0]):
        log.info("accepted %s %s: %s", source, incoming[0].type, outcome, extra={"source": source})
    return answer(accepted, incoming)

"""DESIGN.md's JSON error bodies: every error answer is `{"error": ..., ["detail": ...]}`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


def json_error(
    exc_class: type[web.HTTPException], message: str, detail: Any = None, **kwargs: Any
) -> web.HTTPException:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return exc_class(text=json.dumps(body, default=str), content_type="application/json", **kwargs)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Any HTTP error aiohttp raises itself (404, 405, 413 from client_max_size) becomes a JSON body;
    anything unexpected is logged and answered 500 without leaking internals."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status, headers=_extra_headers(exc))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def _extra_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}

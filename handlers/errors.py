"""Errors raised by verify and parse. Each carries the HTTP status the web layer answers with, so the web
layer only maps them to JSON bodies (the gidgethub way)."""

from __future__ import annotations

from typing import Any


class WebhookError(Exception):
    status: int = 400

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class SignatureError(WebhookError):
    """The request is not provably from the sender: 401, and its body is never stored."""

    status = 401


class ContentTypeError(WebhookError):
    status = 415


class PayloadError(WebhookError):
    """Authentic, but the body is not JSON or not the sender's schema: 400."""

    status = 400

"""Sending one attempt, synchronously (it runs inside an rq job), never raising for a network fault.

Webhooks go through urllib3 to the address ssrf.py checked, never to a fresh DNS answer: for http the
connection goes to that IP with the original `Host` header; for https too, with SNI and certificate
verification against the original host name (urllib3's `server_hostname` / `assert_hostname`). Redirects
are not followed (a 3xx is a failed attempt, per Standard Webhooks; following one could leave the checked
address). Chat channels go through apprise, which resolves names itself: for those the SSRF check runs
right before the send, but a rebinding between the two cannot be excluded; an egress proxy closes that."""

from __future__ import annotations

import base64
import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import certifi
import urllib3

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "webhook-broker-notify/1"


@dataclass(frozen=True)
class SendResult:
    ok: bool
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


def post_webhook(
    url: str, address: str, body: str, headers: dict[str, str], timeout_s: float, ca_bundle: str | None = None
) -> SendResult:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    default_port = port == (443 if parts.scheme == "https" else 80)
    host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
    request_headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **headers,
    }
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request_headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = urllib3.Timeout(connect=timeout_s, read=timeout_s, total=timeout_s)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            address, port, timeout=timeout, retries=False, maxsize=1, cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle or certifi.where(), server_hostname=host, assert_hostname=host,
        )  # fmt: skip
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    started = time.monotonic()
    try:
        response = pool.urlopen(
            "POST", path, body=body.encode(), headers=request_headers, redirect=False,
            retries=False, preload_content=False, assert_same_host=False,
        )  # fmt: skip
        response.read(MAX_RESPONSE_BYTES)  # let the receiver finish; the content is not kept
        response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        return SendResult(ok=False, duration_ms=_ms(started), error=_describe(exc))
    finally:
        pool.close()
    status = response.status
    return SendResult(
        ok=200 <= status < 300,
        duration_ms=_ms(started),
        status_code=status,
        error=None if 200 <= status < 300 else f"HTTP {status}",
        retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
    )


def send_apprise(url: str, title: str, body: str, notify_type: str, timeout_s: float) -> SendResult:
    import apprise  # heavy import, only in workers that send to chat channels

    started = time.monotonic()
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if not plugin:
        return SendResult(ok=False, duration_ms=0, error="apprise cannot parse the target URL")
    plugin.socket_connect_timeout = timeout_s
    plugin.socket_read_timeout = timeout_s
    with apprise.LogCapture(level=logging.WARNING) as captured:
        ok = bool(plugin.notify(body=body, title=title, notify_type=apprise.NotifyType(notify_type)))
    log_text = captured.getvalue().strip() if hasattr(captured, "getvalue") else ""
    error = None if ok else (log_text.splitlines()[-1][:500] if log_text else "apprise reported a failure")
    return SendResult(ok=ok, duration_ms=_ms(started), error=error)


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as delay-seconds or an HTTP-date; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError | urllib3.exceptions.ReadTimeoutError):
        return f"timeout: {exc}"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

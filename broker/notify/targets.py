"""What a target URL is, without touching the network: syntax checks, the network hosts it will reach
(for the SSRF check) and a masked form that is safe to echo back.

Webhook targets are plain http(s) URLs. Chat channels are apprise URLs (`slack://`, `msteams://`,
`mmost://`, `discord://`, `mailtos://`, `json://`, ...). Apprise puts tokens in the host and path of many
schemes, so masking never trusts any part of a URL except scheme, a network host and harmless options."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from broker.notify.models import Target

MASK = "****"
# Apprise plugins that act on the broker's own host (desktop, local syslog): never a team's target.
LOCAL_APPRISE_SCHEMES = frozenset({"dbus", "glib", "gnome", "kde", "qt", "macosx", "windows", "syslog"})
# Query options whose values carry no secret (apprise's common options, plus the http method).
HARMLESS_QUERY = frozenset(
    {"method", "format", "overflow", "mode", "priority", "image", "footer", "batch", "tts", "avatar",
     "blocks", "timestamp", "retry", "wait", "optional", "verify", "rto", "cto", "title", "emojis"}
)  # fmt: skip


class TargetError(ValueError):
    """The target URL is malformed or of a kind the broker does not send to (a 400)."""


def validate(target: Target) -> None:
    if target.type == "webhook":
        parts = _split(target.url)
        if parts.scheme not in {"http", "https"}:
            raise TargetError("a webhook target needs an http:// or https:// URL")
        if not parts.hostname:
            raise TargetError("a webhook target URL needs a host")
        return
    scheme = target.url.split("://", 1)[0].lower()
    if scheme in LOCAL_APPRISE_SCHEMES:
        raise TargetError(f"apprise scheme {scheme}:// acts on the broker host; it is not a team target")
    if apprise_plugin(target.url) is None:
        raise TargetError("not an apprise URL apprise can send to (see the apprise wiki for its URL forms)")


def network_hosts(target: Target) -> list[tuple[str, int]]:
    """(host, port) pairs the target will connect to, when the URL decides them. Apprise schemes whose
    host is a token (slack://, discord://, ...) reach a fixed public service and yield none."""
    if target.type == "webhook":
        parts = _split(target.url)
        return [(parts.hostname or "", _port(parts))]
    plugin = apprise_plugin(target.url)
    if plugin is None:
        return []
    hosts: list[tuple[str, int]] = []
    if "host" in getattr(plugin, "template_tokens", {}) and getattr(plugin, "host", None):
        port = plugin.port if isinstance(plugin.port, int) else (443 if plugin.secure else 80)
        hosts.append((plugin.host, port))
    smtp_host = getattr(plugin, "smtp_host", None)  # email may relay through a named SMTP server
    if isinstance(smtp_host, str) and smtp_host:
        hosts.append((smtp_host, int(getattr(plugin, "port", None) or 587)))
    return hosts


def service_name(target: Target) -> str:
    if target.type == "webhook":
        return "webhook"
    plugin = apprise_plugin(target.url)
    return str(getattr(plugin, "service_name", "apprise")) if plugin is not None else "apprise"


@functools.lru_cache(maxsize=256)
def apprise_plugin(url: str) -> Any:
    """The apprise plugin instance for `url`, or None. Parsing only: apprise sends nothing here."""
    import apprise  # heavy import, only where apprise targets are used

    return apprise.Apprise.instantiate(url, suppress_exceptions=True) or None


def mask(target: Target) -> str:
    """The URL with every possible secret replaced: passwords, query values (except harmless apprise
    options), token-like path segments, and the host itself when the scheme keeps a token there."""
    parts = _split(target.url)
    host_is_network = target.type == "webhook" or any(h for h, _ in network_hosts(target))
    netloc = _mask_netloc(parts, host_is_network)
    path = "/".join(_mask_segment(seg) for seg in parts.path.split("/"))
    query = "&".join(_mask_query(parts.query))
    return parts._replace(netloc=netloc, path=path, query=query).geturl()


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise TargetError(f"malformed URL: {exc}") from None
    return parts._replace(scheme=parts.scheme.lower())


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _mask_netloc(parts: SplitResult, host_is_network: bool) -> str:
    host = parts.hostname or ""
    if not host_is_network:
        host = _mask_segment(host, always=True)
    elif ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    if parts.username is not None or parts.password is not None:
        user = parts.username or ""
        userinfo = f"{user}:{MASK}" if parts.password is not None else (user if host_is_network else MASK)
        netloc = f"{userinfo}@{netloc}"
    return netloc


def _mask_segment(segment: str, *, always: bool = False) -> str:
    """Keep short words (`hooks`, `services`, `#general`); anything long or with digits may be a token."""
    if not segment or segment.startswith("#"):
        return segment
    looks_secret = len(segment) >= 16 or any(c.isdigit() for c in segment) or always
    if not looks_secret:
        return segment
    return f"{segment[0]}...{segment[-1]}" if len(segment) >= 12 else MASK


def _mask_query(query: str) -> Iterator[str]:
    """Keys stay as written (apprise's `+Header` / `-field` prefixes must not turn into spaces)."""
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        yield f"{key}={value if unquote(key).lower() in HARMLESS_QUERY else MASK}"

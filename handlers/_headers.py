"""Case-insensitive header access over any `Mapping[str, str]` (aiohttp's CIMultiDict, a plain dict from a
test or a replayed capture), plus the content-type check every sender shares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from handlers.errors import ContentTypeError


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The value of `name`, whatever its case on the wire; None when absent."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def wire_bytes(value: str) -> bytes:
    """A header value back as the bytes on the wire. aiohttp decodes headers as UTF-8 with
    surrogateescape, so undecodable bytes come back exactly; anything else unencodable becomes '?'
    (it can then only fail a comparison, never crash one)."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")


def media_type(headers: Mapping[str, str]) -> str | None:
    """The Content-Type minus parameters, lower-cased: `Text/Plain; charset=utf-8` → `text/plain`."""
    value = header(headers, "Content-Type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def require_media_type(headers: Mapping[str, str], accepted: frozenset[str], sender: str) -> str:
    """The request's media type if `accepted` holds it, else ContentTypeError (415)."""
    found = media_type(headers)
    if found in accepted:
        return found
    expected = " or ".join(sorted(accepted))
    shown = "none" if found is None else repr(found[:100])
    raise ContentTypeError(f"unsupported Content-Type {shown} for {sender}: expected {expected}")


def pick(headers: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The headers worth keeping on the event record, under their canonical names. Callers pass only
    names that carry no secret: Authorization and signatures are never recorded."""
    kept: dict[str, str] = {}
    for name in names:
        value = header(headers, name)
        if value is not None:
            kept[name] = value
    return kept

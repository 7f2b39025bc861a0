"""Terminal rendering for the ops commands: event tables, one-line changes, a readable event record and the
table of rollback pins.
Pure functions from the API's JSON to text, so they are tested without a terminal."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime
from typing import Any, TextIO

STATUS_COLORS = {
    "queued": "34",
    "processing": "35",
    "done": "32",
    "ignored": "90",
    "failed": "33",
    "dead": "31",
}
COLUMNS = ("RECEIVED", "ID", "SOURCE", "TYPE", "TEAM", "REPO", "SUBJECT", "STATUS", "REASON")
FIXED = {"RECEIVED": 19, "ID": 26, "SOURCE": 6, "TYPE": 15, "TEAM": 12, "STATUS": 10}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def use_color(out: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set."""
    return out.isatty() and not os.environ.get("NO_COLOR")


def clean(value: Any) -> str:
    """Data from webhooks goes to a terminal: strip control characters (escape sequences included)."""
    return _CONTROL.sub(" ", "" if value is None else str(value))


def local_time(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return clean(iso)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment.tzinfo else moment.isoformat()


def subject(event: dict[str, Any]) -> str:
    if event.get("image"):
        tag = f":{event['tag']}" if event.get("tag") else ""
        digest = f"@{str(event['digest'])[:19]}" if not tag and event.get("digest") else ""
        return f"{event['image']}{tag}{digest}"
    parts = []
    if event.get("ref"):
        parts.append(re.sub(r"^refs/(heads|tags)/", "", str(event["ref"])))
    if event.get("commit"):
        parts.append(str(event["commit"])[:8])
    build = event.get("build") or {}
    if build.get("number") is not None:
        parts.append(f"build #{build['number']} {build.get('status') or ''}".strip())
    return " ".join(parts)


def _cells(event: dict[str, Any]) -> dict[str, str]:
    return {
        "RECEIVED": local_time(event.get("received_at")),
        "ID": clean(event.get("id")),
        "SOURCE": clean(event.get("source")),
        "TYPE": clean(event.get("type")),
        "TEAM": clean(event.get("team") or "-"),
        "REPO": clean(event.get("repo") or "-"),
        "SUBJECT": clean(subject(event) or "-"),
        "STATUS": clean(event.get("status")),
        "REASON": clean(event.get("reason") or ""),
    }


def _paint(text: str, status: str, color: bool) -> str:
    code = STATUS_COLORS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def _widths(rows: list[dict[str, str]], total: int) -> dict[str, int]:
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in COLUMNS}
    for column, cap in FIXED.items():
        widths[column] = min(widths[column], max(cap, len(column)))
    for column in ("REPO", "SUBJECT"):
        widths[column] = min(widths[column], 32)
    used = sum(widths[c] for c in COLUMNS if c != "REASON") + 2 * (len(COLUMNS) - 1)
    widths["REASON"] = max(10, min(widths["REASON"], total - used))
    return widths


def _line(cells: dict[str, str], widths: dict[str, int], status: str | None, color: bool) -> str:
    parts = []
    for column in COLUMNS:
        text = cells[column]
        width = widths[column]
        if len(text) > width:
            text = text[: max(1, width - 1)] + "…"
        padded = text.ljust(width) if column != "REASON" else text
        parts.append(_paint(padded, status or "", color) if column == "STATUS" and status else padded)
    return "  ".join(parts).rstrip()


def event_table(events: list[dict[str, Any]], *, color: bool = False, width: int | None = None) -> str:
    if not events:
        return "no events\n"
    rows = [_cells(e) for e in events]
    widths = _widths(rows, width or shutil.get_terminal_size((160, 24)).columns)
    lines = [_line({c: c for c in COLUMNS}, widths, None, False)]
    lines += [_line(row, widths, row["STATUS"], color) for row in rows]
    return "\n".join(lines) + "\n"


def event_row(event: dict[str, Any], *, color: bool = False) -> str:
    """One change in a live tail, laid out like a table row."""
    row = _cells(event)
    return _line(row, _widths([row], shutil.get_terminal_size((160, 24)).columns), row["STATUS"], color)


def show_event(event: dict[str, Any], *, payload: bool = False, color: bool = False) -> str:
    status = clean(event.get("status"))
    out = [
        f"{clean(event.get('source'))} {clean(event.get('type'))}  {clean(event.get('id'))}  "
        + _paint(status, status, color),
        "",
    ]
    build = event.get("build") or {}
    facts = [
        ("received", local_time(event.get("received_at"))),
        ("updated", local_time(event.get("updated_at"))),
        ("delivery", event.get("delivery_id")),
        ("team", event.get("team")),
        ("repo", event.get("repo")),
        ("ref", event.get("ref")),
        ("commit", event.get("commit")),
        ("image", event.get("image")),
        ("tag", event.get("tag")),
        ("digest", event.get("digest")),
        (
            "build",
            " ".join(str(v) for v in (build.get("number"), build.get("status"), build.get("link")) if v),
        ),
        ("attempts", event.get("attempts")),
        ("reason", event.get("reason")),
        ("deployment", event.get("deployment_id")),
    ]
    out += [f"  {name:<11} {clean(value)}" for name, value in facts if value not in (None, "")]
    actions = event.get("actions") or []
    out += ["", f"actions ({len(actions)})"]
    for action in actions:
        detail = action.get("detail")
        detail_text = json.dumps(detail, sort_keys=True) if isinstance(detail, dict | list) else detail
        out.append(
            f"  {local_time(action.get('at'))}  {clean(action.get('kind'))} {clean(action.get('target'))}: "
            f"{clean(action.get('decision'))} -> {clean(action.get('result') or '-')}"
            + (f"  ({clean(detail_text)})" if detail_text not in (None, "") else "")
        )
    headers = event.get("headers") or {}
    if headers:
        out += ["", "headers"]
        out += [f"  {clean(k)}: {clean(v)}" for k, v in headers.items() if not _secret(k)]
    if payload:
        out += ["", "payload", json.dumps(event.get("payload") or {}, indent=2, ensure_ascii=True)]
    return "\n".join(out) + "\n"


def _secret(header: str) -> bool:
    return bool(re.search(r"authorization|signature|token|secret|cookie", header, re.IGNORECASE))


_DIGEST = re.compile(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}")
PIN_COLUMNS = ("KEY", "TEAM", "APPLIED → FOUND", "PINNED", "REASON")


def image_value(value: Any) -> str:
    """An image value for a terminal, digests cut to 12 hex digits."""
    return _DIGEST.sub(r"\1…", clean(value or "-"))


def pin_table(pins: list[dict[str, Any]]) -> str:
    """Pins as the API lists them (by Application and alias), one row each."""
    if not pins:
        return "no pins\n"
    rows = [
        (
            clean(p.get("key")),
            clean(p.get("team") or "-"),
            f"{image_value(p.get('applied'))} → {image_value(p.get('found'))}",
            local_time(p.get("pinned_at")),
            clean(p.get("reason")),
        )
        for p in pins
    ]
    widths = [max(len(row[i]) for row in [PIN_COLUMNS, *rows]) for i in range(len(PIN_COLUMNS) - 1)]
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in [PIN_COLUMNS, *rows]
    ]
    return "\n".join(lines) + "\n"

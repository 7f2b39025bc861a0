"""What a delivery says. A delivery carries one notice, or a folded burst of notices for one app (the
latest is the headline, the earlier ones are listed). Webhooks get JSON in the Standard Webhooks shape
(`type`, `timestamp`, `data`); chat channels get a title and a text body. A subscription may set its own
text template: `string.Template` over the notice's fields (`$kind $team $app $summary $event_id
$deployment_id` plus every key of `data`, nested keys joined by `_`, e.g. `$build_link`), substituted
safely: an unknown placeholder stays as written, nothing is evaluated."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from handlers.notices import Notice

MAX_DETAIL_LINES = 20
# What deployed first, in the words a team reads (keys as the GitOps code fills `Notice.data`); any other
# key follows under its own name.
LABELS = (
    ("app", "app"),
    ("image", "image"),
    ("commit", "commit"),
    ("commit_message", "commit message"),
    ("commit_url", "commit link"),
    ("build_number", "build"),
    ("build_link", "build link"),
    ("pusher", "pushed by"),
    ("argocd_phase", "Argo CD sync"),
    ("argocd_health", "Argo CD health"),
    ("argocd_message", "Argo CD says"),
    ("team", "team"),
)
MAX_VALUE = 300
_KEY_RE = re.compile(r"[^A-Za-z0-9_]")
SUCCESS_KINDS = frozenset({"sync.succeeded", "app.healthy", "deployment.succeeded", "build.succeeded"})
FAILURE_KINDS = frozenset(
    {"sync.failed", "app.degraded", "deployment.failed", "build.failed", "subscription.disabled"}
)
WARNING_KINDS = frozenset({"event.ignored", "update.pinned"})  # nothing failed, but someone should look


def fields(notice: Notice) -> dict[str, str]:
    """The flat placeholder mapping of one notice; the notice's own fields win over `data` keys."""
    flat: dict[str, str] = {}
    _flatten(notice.data, "", flat)
    for key in ("kind", "team", "app", "event_id", "deployment_id", "summary"):
        value = getattr(notice, key)
        flat[key] = "" if value is None else str(value)
    return flat


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            name = _KEY_RE.sub("_", str(key))
            _flatten(item, f"{prefix}_{name}" if prefix else name, out)
    elif prefix:
        if isinstance(value, list | tuple):
            out[prefix] = ", ".join(str(v) for v in value)
        else:
            out[prefix] = "" if value is None else str(value)


def title(notices: Sequence[Notice]) -> str:
    latest = notices[-1]
    where = "/".join(part for part in (latest.team, latest.app) if part)
    more = f" (+{len(notices) - 1} earlier)" if len(notices) > 1 else ""
    return f"[{where}] {latest.kind}{more}"


def text(notices: Sequence[Notice], template: str | None) -> str:
    """The message body for chat channels, and `data.message` for webhooks."""
    latest = notices[-1]
    if template is not None:
        body = string.Template(template).safe_substitute(fields(latest))
    else:
        flat = {k: v for k, v in fields(latest).items() if v and k not in {"kind", "summary"}}
        known = [(label, flat.pop(key)) for key, label in LABELS if key in flat]
        details = known + sorted(flat.items())
        lines = [latest.summary] + [f"{key}: {_clip(value)}" for key, value in details[:MAX_DETAIL_LINES]]
        body = "\n".join(lines)
    if len(notices) > 1:
        earlier = "\n".join(f"- {n.kind}: {_clip(n.summary)}" for n in notices[:-1])
        body += f"\n\nEarlier in this burst:\n{earlier}"
    return body


def webhook_body(notices: Sequence[Notice], template: str | None, now: datetime) -> str:
    latest = notices[-1]
    data = _webhook_data(latest)
    data["message"] = text(notices, template)
    if len(notices) > 1:
        data["folded"] = [_webhook_data(n) for n in notices[:-1]]
    payload = {"type": latest.kind, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)


def _webhook_data(notice: Notice) -> dict[str, Any]:
    """The notice's fields, with its free-form `data` under `details` (what deployed: image, tag, digest,
    commit, build link, who pushed, the ArgoCD result, as the worker recorded them)."""
    data: dict[str, Any] = notice.model_dump(mode="json", exclude={"data"})
    data["details"] = notice.model_dump(mode="json")["data"]
    return data


def notify_type(kind: str) -> str:
    """apprise's NotifyType value (colours and icons in chat)."""
    if kind in SUCCESS_KINDS:
        return "success"
    if kind in FAILURE_KINDS:
        return "failure"
    return "warning" if kind in WARNING_KINDS else "info"


def _clip(value: str) -> str:
    return value if len(value) <= MAX_VALUE else value[: MAX_VALUE - 1] + "…"

"""Subscriptions and deliveries as values, plus the validation of what a caller may send. No I/O here:
target checks that need DNS live in ssrf.py, target parsing in targets.py, Redis in store.py."""

from __future__ import annotations

import re
import string
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from handlers.notices import NOTICE_KINDS, Notice

ALL = "*"
# Told to the team whatever its kinds filter says: the team must learn that a target went quiet.
ALWAYS_DELIVERED = frozenset({"subscription.disabled"})
MAX_FILTERS = 50
MAX_TEMPLATE = 4000
MAX_URL = 2048
_GLOB_RE = re.compile(r"^[A-Za-z0-9*?\[\]!._-]{1,100}$")

TargetType = Literal["webhook", "apprise"]
DeliveryStatus = Literal["pending", "retrying", "succeeded", "dead"]


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: TargetType
    url: str = Field(min_length=1, max_length=MAX_URL)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """A bare URL is accepted: http(s) means a signed webhook, any other scheme an apprise URL."""
        if isinstance(value, str):
            scheme = value.split(":", 1)[0].lower()
            return {"type": "webhook" if scheme in {"http", "https"} else "apprise", "url": value}
        return value


class SigningSecret(BaseModel):
    model_config = ConfigDict(frozen=True)

    value: str
    created_at: datetime
    expires_at: datetime | None = None  # set on the old secret when rotating: both sign until then


def check_kinds(kinds: list[str]) -> list[str]:
    if not kinds:
        raise ValueError(f"give at least one kind, or {ALL!r} for every kind")
    unknown = sorted(set(kinds) - NOTICE_KINDS - {ALL})
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known: {sorted(NOTICE_KINDS)}")
    return sorted(set(kinds))


def check_apps(apps: list[str]) -> list[str]:
    if not apps:
        raise ValueError(f"give at least one app name or glob, or {ALL!r} for every app")
    bad = [app for app in apps if not _GLOB_RE.match(app)]
    if bad:
        raise ValueError(f"app filters must be names or globs of [A-Za-z0-9._-*?[]!], not {bad}")
    return sorted(set(apps))


def check_template(template: str | None) -> str | None:
    if template is None:
        return None
    if len(template) > MAX_TEMPLATE:
        raise ValueError(f"template longer than {MAX_TEMPLATE} characters")
    if not string.Template(template).is_valid():
        raise ValueError("template is not a valid $placeholder template (use $$ for a literal $)")
    return template


class _Filters(BaseModel):
    """Validation shared by create and patch."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("kinds", check_fields=False)
    @classmethod
    def _kinds(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_kinds(value)

    @field_validator("apps", check_fields=False)
    @classmethod
    def _apps(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_apps(value)

    @field_validator("template", check_fields=False)
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return check_template(value)


class SubscriptionIn(_Filters):
    team: str | None = None  # the admin names the team; a team token may omit it
    name: str = Field("", max_length=200)
    target: Target
    kinds: list[str] = Field(default_factory=lambda: [ALL], max_length=MAX_FILTERS)
    apps: list[str] = Field(default_factory=lambda: [ALL], max_length=MAX_FILTERS)
    enabled: bool = True
    template: str | None = None


class SubscriptionPatch(_Filters):
    name: str | None = Field(None, max_length=200)
    target: Target | None = None
    kinds: list[str] | None = Field(None, max_length=MAX_FILTERS)
    apps: list[str] | None = Field(None, max_length=MAX_FILTERS)
    enabled: bool | None = None
    template: str | None = None  # an explicit null removes the template

    @model_validator(mode="after")
    def _no_nulls(self) -> SubscriptionPatch:
        nulls = [f for f in ("name", "target", "kinds", "apps", "enabled") if f in self.model_fields_set
                 and getattr(self, f) is None]  # fmt: skip
        if nulls:
            raise ValueError(f"{nulls} cannot be null")
        return self


class Subscription(BaseModel):
    id: str
    team: str
    name: str = ""
    target: Target
    kinds: list[str] = Field(default_factory=lambda: [ALL])
    apps: list[str] = Field(default_factory=lambda: [ALL])
    enabled: bool = True
    template: str | None = None
    secrets: list[SigningSecret] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def matches(self, notice: Notice) -> bool:
        if not self.enabled or notice.team != self.team:
            return False
        if notice.kind in ALWAYS_DELIVERED:
            return True
        if ALL not in self.kinds and notice.kind not in self.kinds:
            return False
        if ALL in self.apps:
            return True
        return notice.app is not None and any(fnmatchcase(notice.app, glob) for glob in self.apps)

    def signing_secrets(self, now: datetime) -> list[str]:
        return [s.value for s in self.secrets if s.expires_at is None or s.expires_at > now]


class Health(BaseModel):
    consecutive_dead: int = 0
    failing_since: datetime | None = None
    last_failure_at: datetime | None = None
    last_success_at: datetime | None = None


class Attempt(BaseModel):
    number: int
    at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    address: str | None = None  # the checked IP the request went to (webhooks)
    next_retry_s: float | None = None


class Delivery(BaseModel):
    id: str
    subscription_id: str
    team: str
    kind: str  # of the latest notice it carries (a folded burst carries several)
    app: str | None = None
    summary: str
    message_id: str  # `webhook-id`: the same across retries and replays, so receivers can dedupe
    status: DeliveryStatus = "pending"
    attempts: int = 0
    round_attempts: int = 0  # position in the retry schedule; a replay starts a new round
    notices: int = 1
    folding: bool = False  # created with a fold window open: later notices for its app may join it
    replays: int = 0
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    token: str = ""  # the rq job holding this token is the only one allowed to attempt it

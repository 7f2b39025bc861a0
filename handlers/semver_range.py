"""Semantic versions and version constraints as Argo CD and Image Updater read them (Masterminds/semver v3):
`~1.2`, `^1.2.3`, `>=1.0 <2.0`, `1.2.x`, `1.2 - 1.4`, `a || b`. A bare partial version (`1.12`) is a range
(`>=1.12.0 <1.13.0`). Pre-releases satisfy a constraint only when the constraint itself names one."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import semver

_VERSION = re.compile(
    r"^v?(?P<major>0|[1-9]\d*|[xX*])(?:\.(?P<minor>0|[1-9]\d*|[xX*]))?(?:\.(?P<patch>0|[1-9]\d*|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_WILDCARDS = {"x", "X", "*"}
_OP = re.compile(r"^(?P<op>!=|>=|=>|<=|=<|~>|[=><~^])?\s*(?P<ver>\S+)$")


@lru_cache(maxsize=4096)
def parse_version(text: str) -> semver.Version | None:
    """A tag as a version: `v1.2.3`, `1.2.3-rc.1`, `1.2` (= 1.2.0). Wildcards and junk give None."""
    match = _VERSION.match(text.strip())
    if not match:
        return None
    parts = [match.group("major"), match.group("minor"), match.group("patch")]
    if any(part in _WILDCARDS for part in parts if part is not None):
        return None
    major, minor, patch = (int(part) if part is not None else 0 for part in parts)
    return semver.Version(major, minor, patch, match.group("pre"), match.group("build"))


@dataclass(frozen=True)
class _Partial:
    """A version as written in a constraint: missing or wildcard parts are None ("dirty")."""

    major: int | None
    minor: int | None
    patch: int | None
    pre: str | None

    @property
    def dirty(self) -> bool:
        return self.minor is None or self.patch is None

    def floor(self) -> semver.Version:
        return semver.Version(self.major or 0, self.minor or 0, self.patch or 0, self.pre)

    def next_open(self) -> semver.Version | None:
        """The first version above the range a dirty partial denotes (`1.2` -> 1.3.0, `1` -> 2.0.0)."""
        if self.major is None:
            return None
        if self.minor is None:
            return semver.Version(self.major + 1, 0, 0)
        if self.patch is None:
            return semver.Version(self.major, self.minor + 1, 0)
        return semver.Version(self.major, self.minor, self.patch + 1)


def _partial(text: str) -> _Partial:
    match = _VERSION.match(text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    values: list[int | None] = []
    wild = False
    for name in ("major", "minor", "patch"):
        part = match.group(name)
        if part is None or part in _WILDCARDS or wild:
            wild = True
            values.append(None)
        else:
            values.append(int(part))
    return _Partial(values[0], values[1], values[2], match.group("pre"))


Check = Callable[[semver.Version], bool]


def _between(low: semver.Version | None, high: semver.Version | None, *, low_incl: bool = True) -> Check:
    def check(version: semver.Version) -> bool:
        if low is not None and (version < low or (not low_incl and version == low)):
            return False
        return high is None or version < high

    return check


def _simple(op: str, ver: _Partial) -> Check:
    """One comparison, with Masterminds' reading of partial versions."""
    top = ver.next_open()
    if op in ("", "="):
        if ver.major is None:
            return _between(None, None)
        if ver.dirty:
            return _between(ver.floor(), top)
        exact = ver.floor()
        return lambda v: v.compare(exact) == 0
    if op == "!=":
        inner = _simple("=", ver)
        return lambda v: not inner(v)
    if op == ">":
        if ver.dirty:
            return _between(top, None) if top is not None else (lambda v: False)
        return _between(ver.floor(), None, low_incl=False)
    if op in (">=", "=>"):
        return _between(ver.floor(), None)
    if op == "<":
        return _between(None, ver.floor())
    if op in ("<=", "=<"):
        if ver.dirty:
            return _between(None, top)
        exact = ver.floor()
        return lambda v: v <= exact
    if op in ("~", "~>"):
        if ver.major is None:
            return _between(None, None)
        high = (
            semver.Version(ver.major + 1, 0, 0)
            if ver.minor is None
            else semver.Version(ver.major, ver.minor + 1, 0)
        )
        return _between(ver.floor(), high)
    if op == "^":
        if ver.major is None:
            return _between(None, None)
        if ver.major > 0 or ver.minor is None:
            high = semver.Version(ver.major + 1, 0, 0)
        elif ver.minor > 0 or ver.patch is None:
            high = semver.Version(0, ver.minor + 1, 0)
        else:
            high = semver.Version(0, 0, (ver.patch or 0) + 1)
        return _between(ver.floor(), high)
    raise ValueError(f"unknown operator {op!r}")


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: OR of AND-groups. `wants_prerelease` per group: only a group that names a
    pre-release admits pre-release versions (Masterminds' rule)."""

    text: str
    groups: tuple[tuple[tuple[Check, ...], bool], ...]

    def check(self, version: semver.Version) -> bool:
        for checks, wants_pre in self.groups:
            if version.prerelease and not wants_pre:
                continue
            if all(check(version) for check in checks):
                return True
        return False

    def check_text(self, tag: str) -> bool:
        version = parse_version(tag)
        return version is not None and self.check(version)


def _tokens(group: str) -> list[str]:
    """Split an AND group on commas and spaces, keeping `>= 1.2` and `1.2 - 1.4` together."""
    raw = [tok for tok in re.split(r"[\s,]+", group.strip()) if tok]
    out: list[str] = []
    idx = 0
    while idx < len(raw):
        tok = raw[idx]
        if tok in {"=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^"} and idx + 1 < len(raw):
            out.append(tok + raw[idx + 1])
            idx += 2
        elif idx + 2 < len(raw) and raw[idx + 1] == "-":
            out.append(f"{tok} - {raw[idx + 2]}")
            idx += 3
        else:
            out.append(tok)
            idx += 1
    return out


@lru_cache(maxsize=1024)
def parse_constraint(text: str) -> Constraint:
    """Parse a constraint; raises ValueError when it is not one."""
    groups: list[tuple[tuple[Check, ...], bool]] = []
    for group in text.split("||"):
        checks: list[Check] = []
        wants_pre = False
        tokens = _tokens(group)
        if not tokens:
            raise ValueError(f"empty constraint in {text!r}")
        for token in tokens:
            if " - " in token:
                low_text, high_text = (part.strip() for part in token.split(" - ", 1))
                low, high = _partial(low_text), _partial(high_text)
                checks += [_simple(">=", low), _simple("<=", high)]
                wants_pre = wants_pre or bool(low.pre or high.pre)
                continue
            match = _OP.match(token)
            if not match:
                raise ValueError(f"not a constraint: {token!r}")
            ver = _partial(match.group("ver"))
            checks.append(_simple(match.group("op") or "", ver))
            wants_pre = wants_pre or bool(ver.pre)
        groups.append((tuple(checks), wants_pre))
    return Constraint(text=text, groups=tuple(groups))


def try_constraint(text: str) -> Constraint | None:
    try:
        return parse_constraint(text)
    except ValueError:
        return None

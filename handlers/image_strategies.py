"""Image Updater's update strategies applied to one pushed tag: is the tag eligible for a tracked image
(allow/ignore lists, constraint, fixed tag), and would moving the workload to it be an upgrade (never a
downgrade below what it carries or runs now)? Harbor's webhook tells us the tag, digest and push time.
`newest-build` orders by build time, the image's `created`, as Image Updater does, when the worker could ask
Harbor's API for it (`built_at`), and by push time where either side's build time is unknown."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from handlers.semver_range import parse_version, try_constraint

Strategy = Literal["semver", "digest", "newest-build", "alphabetical"]
STRATEGIES: frozenset[str] = frozenset({"semver", "digest", "newest-build", "alphabetical"})
_ALIASES = {"latest": "newest-build", "name": "alphabetical", "lexical": "alphabetical"}


def normalize_strategy(value: str | None) -> Strategy | None:
    """Image Updater's names, old and new (`latest` = newest-build, `name` = alphabetical), else None."""
    name = (value or "semver").strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in STRATEGIES else None  # type: ignore[return-value]


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _pattern_matches(pattern: str, tag: str) -> bool:
    """`regexp:<re>` (searched, as Go's MatchString) or a glob."""
    if pattern.startswith("regexp:"):
        compiled = _regex(pattern[len("regexp:") :])
        return compiled is not None and compiled.search(tag) is not None
    return fnmatch.fnmatchcase(tag, pattern)


def tag_allowed(tag: str, allow: str | None, ignore: Sequence[str]) -> str | None:
    """None if the tag passes allow-tags/ignore-tags, else the reason it does not."""
    if allow and allow.strip() not in ("", "any") and not _pattern_matches(allow.strip(), tag):
        return f"tag {tag} not allowed by allow-tags {allow}"
    for pattern in ignore:
        if pattern and _pattern_matches(pattern, tag):
            return f"tag {tag} matches ignore-tags {pattern}"
    return None


@dataclass(frozen=True)
class Candidate:
    """A pushed artifact offered to one tracked image."""

    tag: str
    digest: str | None
    pushed_at: float | None  # Harbor occur_at (Unix seconds)
    event_id: str
    built_at: float | None = None  # the image config's `created` (Unix seconds), when Harbor's API told


@dataclass(frozen=True)
class Current:
    """What the workload carries or runs now for one image (any field may be unknown)."""

    tag: str | None = None
    digest: str | None = None
    pushed_at: float | None = None
    built_at: float | None = None


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str
    downgrade: bool = False
    same: bool = False


def eligible(
    strategy: Strategy,
    tag: str,
    *,
    constraint: str | None,
    fixed_tag: str | None,
    allow: str | None,
    ignore: Sequence[str],
    digest: str | None,
) -> str | None:
    """None if the pushed tag may update an image tracked this way, else the reason it may not."""
    refused = tag_allowed(tag, allow, ignore)
    if refused:
        return refused
    if strategy == "digest":
        wanted = fixed_tag or "latest"
        if tag != wanted:
            return f"tag {tag} is not the tracked tag {wanted} (digest strategy)"
        if not digest:
            return "push carries no digest (digest strategy)"
        return None
    if strategy == "semver":
        version = parse_version(tag)
        if version is None:
            return f"tag {tag} is not a semantic version"
        if constraint:
            parsed = try_constraint(constraint)
            if parsed is None:
                return f"constraint {constraint} cannot be parsed"
            if not parsed.check(version):
                return f"tag {tag} rejected by constraint {constraint}"
        elif version.prerelease:
            return f"tag {tag} is a pre-release and no constraint asks for one"
    return None


# The strategies that order tags by their text; the others order pushes by time.
ORDERED: frozenset[str] = frozenset({"semver", "alphabetical"})


def tag_order(strategy: Strategy, tag: str | None, other: str | None) -> int | None:
    """-1, 0 or 1 as `tag` sorts before, with or after `other` under `strategy`; None when it cannot tell:
    a tag unknown or (semver) not a version, or a strategy that orders by time (digest, newest-build)."""
    if strategy not in ORDERED or not tag or not other:
        return None
    if strategy == "semver":
        version, other_version = parse_version(tag), parse_version(other)
        return None if version is None or other_version is None else version.compare(other_version)
    return (tag > other) - (tag < other)


def _compare(strategy: Strategy, new: Candidate, cur: Current) -> Verdict:
    if strategy in ORDERED:
        order = tag_order(strategy, new.tag, cur.tag)
        if order is None:
            unknown = "no comparable current version" if strategy == "semver" else "no current tag"
            return Verdict(True, unknown)
        if order < 0:
            how = " (alphabetical)" if strategy == "alphabetical" else ""
            return Verdict(False, f"would downgrade {cur.tag} to {new.tag}{how}", downgrade=True)
        if order == 0:
            return Verdict(False, f"already at {cur.tag}", same=True)
        return Verdict(True, f"{cur.tag} -> {new.tag}")
    # digest and newest-build: what is carried, then build time (newest-build, both known) or push time.
    if (
        cur.digest
        and new.digest
        and cur.digest == new.digest
        and (strategy == "digest" or cur.tag == new.tag)
    ):
        return Verdict(False, f"already at {new.tag}@{new.digest}", same=True)
    if strategy == "newest-build" and cur.built_at is not None and new.built_at is not None:
        if new.built_at < cur.built_at:
            return Verdict(False, "older build than the one deployed (would downgrade)", downgrade=True)
        return Verdict(True, "newer build")
    if cur.pushed_at is not None and new.pushed_at is not None and new.pushed_at < cur.pushed_at:
        return Verdict(False, "older push than the one deployed (would downgrade)", downgrade=True)
    return Verdict(True, "newer push")


def judge(strategy: Strategy, candidate: Candidate, currents: Iterable[Current]) -> Verdict:
    """Would moving to `candidate` be an update against every known current value? The strictest
    answer wins: a downgrade against any of them refuses the move."""
    verdicts = [
        _compare(strategy, candidate, cur) for cur in currents if cur.tag or cur.digest or cur.pushed_at
    ]
    for verdict in verdicts:
        if verdict.downgrade:
            return verdict
    for verdict in verdicts:
        if verdict.same:
            return verdict
    return verdicts[0] if verdicts else Verdict(True, "nothing deployed yet")


def best(strategy: Strategy, candidates: Sequence[Candidate]) -> Candidate:
    """The candidate a burst should settle on: highest version, last alphabetically, newest build (when
    every candidate's build time is known), or latest push."""
    if strategy == "semver":

        def version_key(c: Candidate) -> tuple:
            version = parse_version(c.tag)
            return (version is not None, version or parse_version("0.0.0"), c.pushed_at or 0.0)

        return max(candidates, key=version_key)
    if strategy == "alphabetical":
        return max(candidates, key=lambda c: (c.tag, c.pushed_at or 0.0))
    if strategy == "newest-build" and all(c.built_at is not None for c in candidates):
        return max(candidates, key=lambda c: (c.built_at or 0.0, c.pushed_at or 0.0, c.event_id))
    return max(candidates, key=lambda c: (c.pushed_at or 0.0, c.event_id))


def tag_value(strategy: Strategy, candidate: Candidate) -> str:
    """What is written to the tag parameter: the tag, or `tag@digest` for the digest strategy (as Image
    Updater does, so a moving tag still pins the pushed bits)."""
    if strategy == "digest" and candidate.digest:
        return f"{candidate.tag}@{candidate.digest}"
    return candidate.tag


def split_tag_value(value: str | None) -> Current:
    """A written tag parameter (`1.4.2` or `latest@sha256:...`) back into tag and digest."""
    if not value:
        return Current()
    tag, _, digest = value.partition("@")
    return Current(tag=tag or None, digest=digest or None)

"""Image Updater's strategies, tag filters and the no-downgrade rule, as pure functions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.image_strategies import (
    Candidate,
    Current,
    best,
    eligible,
    judge,
    normalize_strategy,
    split_tag_value,
    tag_allowed,
    tag_value,
)
from handlers.semver_range import parse_constraint, parse_version


@pytest.mark.parametrize(
    ("constraint", "version", "ok"),
    [
        ("~1.4", "1.4.9", True),
        ("~1.4", "1.5.0", False),
        ("1.12", "1.12.3", True),  # Otomi's `versionConstraint: '1.12'`: a bare partial version is a range
        ("1.12", "1.13.0", False),
        ("^1.2.3", "1.9.0", True),
        ("^1.2.3", "2.0.0", False),
        ("^0.2.3", "0.2.9", True),
        ("^0.2.3", "0.3.0", False),
        (">=1.0 <2.0", "1.5.0", True),
        (">=1.0, <2.0", "2.0.0", False),
        ("1.2 - 1.4", "1.4.7", True),
        ("1.2 - 1.4", "1.5.0", False),
        (">1.2", "1.2.9", False),
        (">1.2", "1.3.0", True),
        ("<=1.2", "1.2.9", True),
        ("1.x", "1.9.9", True),
        ("*", "3.0.0", True),
        ("1.0 || 2.x", "2.5.0", True),
        ("!=1.2.3", "1.2.3", False),
        ("~1.4", "1.4.3-rc.1", False),  # pre-releases only when the constraint asks for one
        ("~1.4.0-0", "1.4.3-rc.1", True),
    ],
)
def test_constraints(constraint: str, version: str, ok: bool) -> None:
    parsed = parse_version(version)
    assert parsed is not None
    assert parse_constraint(constraint).check(parsed) is ok


def test_versions_parse_leniently_and_reject_junk() -> None:
    assert str(parse_version("v1.2")) == "1.2.0"
    assert parse_version("latest") is None
    assert parse_version("1.x") is None
    with pytest.raises(ValueError):
        parse_constraint("not a version")


def test_strategy_names_old_and_new() -> None:
    assert normalize_strategy(None) == "semver"
    assert normalize_strategy("latest") == "newest-build"
    assert normalize_strategy("name") == "alphabetical"
    assert normalize_strategy("digest") == "digest"
    assert normalize_strategy("bogus") is None


@pytest.mark.parametrize(
    ("tag", "allow", "ignore", "refused"),
    [
        ("1.4.2", None, (), False),
        ("1.4.2", "any", (), False),
        ("1.4.2", "regexp:^1\\.4\\.", (), False),
        ("2.0.0", "regexp:^1\\.4\\.", (), True),
        ("abc1234", "regexp:^[0-9a-f]{7}$", (), False),
        ("latest", None, ("latest", "dev-*"), True),
        ("dev-42", None, ("latest", "dev-*"), True),
        ("1.4.2-debug", None, ("regexp:-debug$",), True),
        ("1.4.2", None, ("regexp:-debug$",), False),
    ],
)
def test_allow_and_ignore_tags(tag: str, allow: str | None, ignore: tuple[str, ...], refused: bool) -> None:
    assert (tag_allowed(tag, allow, ignore) is not None) is refused


def common(**over):  # type: ignore[no-untyped-def]
    base = {"constraint": None, "fixed_tag": None, "allow": None, "ignore": (), "digest": "sha256:1"}
    base.update(over)
    return base


def test_eligibility_per_strategy() -> None:
    assert eligible("semver", "1.4.2", **common(constraint="~1.4")) is None
    assert "rejected by constraint ~1.4" in (eligible("semver", "1.5.0", **common(constraint="~1.4")) or "")
    assert "not a semantic version" in (eligible("semver", "latest", **common()) or "")
    assert "pre-release" in (eligible("semver", "2.0.0-rc.1", **common()) or "")
    assert eligible("digest", "main", **common(fixed_tag="main")) is None
    assert "not the tracked tag main" in (eligible("digest", "1.4.2", **common(fixed_tag="main")) or "")
    assert "no digest" in (eligible("digest", "main", **common(fixed_tag="main", digest=None)) or "")
    assert eligible("newest-build", "anything-goes", **common()) is None
    assert "ignore-tags" in (eligible("alphabetical", "latest", **common(ignore=("latest",))) or "")


def cand(
    tag: str, *, digest: str | None = "sha256:new", at: float | None = 200.0, event: str = "e1"
) -> Candidate:
    return Candidate(tag=tag, digest=digest, pushed_at=at, event_id=event)


def test_semver_never_downgrades_and_knows_when_it_is_already_there() -> None:
    verdict = judge("semver", cand("1.4.2"), [Current(tag="1.4.3")])
    assert not verdict.accept and verdict.downgrade and "would downgrade 1.4.3 to 1.4.2" in verdict.reason
    assert judge("semver", cand("1.4.3"), [Current(tag="1.4.3")]).same
    assert judge("semver", cand("1.4.4"), [Current(tag="1.4.3")]).accept
    assert judge("semver", cand("1.4.4"), [Current(tag="latest")]).accept  # nothing comparable
    assert judge("semver", cand("1.4.4"), []).accept


def test_the_strictest_current_value_wins() -> None:
    # The spec says 1.4.2 but the cluster runs 1.4.5: moving to 1.4.4 would still be a downgrade.
    verdict = judge("semver", cand("1.4.4"), [Current(tag="1.4.2"), Current(tag="1.4.5")])
    assert verdict.downgrade


def test_digest_and_newest_build_order_by_push_time() -> None:
    assert judge(
        "digest", cand("main", digest="sha256:b"), [Current(tag="main", digest="sha256:a", pushed_at=100)]
    ).accept
    same = judge("digest", cand("main", digest="sha256:a"), [Current(tag="main", digest="sha256:a")])
    assert same.same and not same.accept
    older = judge(
        "digest",
        cand("main", digest="sha256:c", at=50),
        [Current(tag="main", digest="sha256:a", pushed_at=100)],
    )
    assert older.downgrade
    assert judge("newest-build", cand("abc", at=300), [Current(tag="xyz", pushed_at=200)]).accept
    assert judge("newest-build", cand("abc", at=100), [Current(tag="xyz", pushed_at=200)]).downgrade


def test_alphabetical() -> None:
    assert judge("alphabetical", cand("2024-05-02"), [Current(tag="2024-05-01")]).accept
    assert judge("alphabetical", cand("2024-04-30"), [Current(tag="2024-05-01")]).downgrade


def test_best_of_a_burst() -> None:
    burst = [cand("1.4.3", event="a", at=1), cand("1.4.10", event="b", at=2), cand("1.4.9", event="c", at=3)]
    assert best("semver", burst).tag == "1.4.10"
    assert best("alphabetical", burst).tag == "1.4.9"
    assert best("newest-build", burst).event_id == "c"
    assert best("digest", burst).event_id == "c"


def test_tag_values() -> None:
    assert tag_value("digest", cand("main", digest="sha256:abc")) == "main@sha256:abc"
    assert tag_value("semver", cand("1.4.2")) == "1.4.2"
    assert split_tag_value("main@sha256:abc") == Current(tag="main", digest="sha256:abc")
    assert split_tag_value(None) == Current()


def test_newest_build_orders_by_build_time_where_both_sides_know_it() -> None:
    # Pushed later but built earlier (an old build re-tagged): older, by Image Updater's order.
    retag = replace(cand("stable", at=200), built_at=50.0)
    deployed = Current(tag="build-9", pushed_at=100, built_at=90.0)
    verdict = judge("newest-build", retag, [deployed])
    assert verdict.downgrade and verdict.reason == "older build than the one deployed (would downgrade)"
    assert judge("newest-build", replace(retag, built_at=95.0), [deployed]).reason == "newer build"
    # Either side's build time unknown: push time decides, as before.
    assert judge("newest-build", retag, [Current(tag="build-9", pushed_at=100)]).accept
    assert judge("digest", retag, [deployed]).accept, "digest ignores build time"


def test_best_newest_build_of_a_burst_by_build_time_only_when_all_are_known() -> None:
    burst = [
        replace(cand("b1", event="a", at=3), built_at=10.0),
        replace(cand("b2", event="b", at=1), built_at=20.0),
    ]
    assert best("newest-build", burst).tag == "b2"
    assert best("newest-build", [*burst, cand("b3", event="c", at=2)]).tag == "b1", (
        "push time when one is unknown"
    )

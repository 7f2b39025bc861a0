"""What counts as a rollback made outside the broker, and what ends one, per update strategy
(handlers/rollback.py): table tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.notify.templates import notify_type
from handlers.image_strategies import Current
from handlers.notices import NOTICE_KINDS
from handlers.rollback import rolled_back, rolled_forward
from handlers.semver_range import parse_version
from tests.test_pins_api import PINNED_AT, pin

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("strategy", "carried", "applied", "expected"),
    [
        ("semver", Current(tag="1.4.1"), Current(tag="1.4.3"), "rolled back from 1.4.3 to 1.4.1"),
        ("semver", Current(tag="v1.4.1"), Current(tag="1.4.3"), "rolled back from 1.4.3 to v1.4.1"),
        ("semver", Current(tag="1.4.3"), Current(tag="1.4.3"), None),
        ("semver", Current(tag="1.5.0"), Current(tag="1.4.3"), None),  # moved on, not back
        ("semver", Current(tag="latest"), Current(tag="1.4.3"), None),  # no order to judge by
        ("semver", Current(tag="1.4.1"), Current(), None),  # the broker never applied anything
        ("semver", Current(), Current(tag="1.4.3"), None),  # the workload carries nothing
        ("alphabetical", Current(tag="2024-05-01"), Current(tag="2024-05-03"), "rolled back"),
        ("alphabetical", Current(tag="2024-05-04"), Current(tag="2024-05-03"), None),
        ("newest-build", Current(tag="build-7"), Current(tag="build-9"), "changed outside the broker"),
        ("newest-build", Current(tag="build-9"), Current(tag="build-9", digest=D1), None),
        ("digest", Current(tag="main", digest=D1), Current(tag="main", digest=D2), "changed outside"),
        ("digest", Current(tag="main"), Current(tag="main", digest=D2), None),  # the digest is unknown
        ("digest", Current(tag="main", digest=D2), Current(tag="main", digest=D2), None),
    ],
)
def test_rolled_back(strategy: str, carried: Current, applied: Current, expected: str | None) -> None:
    found = rolled_back(strategy, carried, applied)  # type: ignore[arg-type]
    if expected is None:
        assert found is None
    else:
        assert found is not None and found.startswith(expected)


@pytest.mark.parametrize(
    ("strategy", "carried", "applied", "expected"),
    [
        ("semver", Current(tag="1.4.3"), Current(tag="1.4.3"), True),
        ("semver", Current(tag="1.4.4"), Current(tag="1.4.3"), True),
        ("semver", Current(tag="1.4.2"), Current(tag="1.4.3"), False),
        ("semver", Current(), Current(tag="1.4.3"), False),
        ("alphabetical", Current(tag="b"), Current(tag="a"), True),
        ("newest-build", Current(tag="build-9"), Current(tag="build-9"), True),
        ("newest-build", Current(tag="build-10"), Current(tag="build-9"), False),  # no order: unpin it
        ("digest", Current(tag="main", digest=D2), Current(tag="main", digest=D2), True),
        ("digest", Current(tag="main", digest=D1), Current(tag="main", digest=D2), False),
    ],
)
def test_rolled_forward(strategy: str, carried: Current, applied: Current, expected: bool) -> None:
    assert rolled_forward(strategy, carried, applied) is expected  # type: ignore[arg-type]


def test_a_pin_says_why_and_how_it_ends() -> None:
    pinned = pin("team-demo-web", "web", "demo")
    assert pinned.key == "team-demo-web/web"
    assert pinned.refusal() == (
        f"pinned since {PINNED_AT:%Y-%m-%d %H:%M:%S} UTC: rolled back from 1.4.0 to 1.3.2; updates resume "
        "once registry.example.com/demo/hello is back at 1.4.0 or later, or after "
        "`broker unpin team-demo-web/web`"
    )


def test_a_pin_is_a_warning_in_chat() -> None:
    assert notify_type("update.pinned") == "warning"
    assert "update.pinned" in NOTICE_KINDS  # teams can subscribe to it


def test_a_pin_of_an_unordered_strategy_waits_for_the_applied_value_itself() -> None:
    pinned = pin("team-demo-web", "web", "demo").model_copy(update={"strategy": "newest-build"})
    assert "is back at 1.4.0, or after" in pinned.refusal()


versions = st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)).map(
    lambda v: ".".join(map(str, v))
)


@given(carried=versions, applied=versions)
def test_semver_a_value_is_either_rolled_back_or_rolled_forward_never_both(
    carried: str, applied: str
) -> None:
    back = rolled_back("semver", Current(tag=carried), Current(tag=applied))
    forward = rolled_forward("semver", Current(tag=carried), Current(tag=applied))
    older = parse_version(carried).compare(parse_version(applied)) < 0  # type: ignore[union-attr]
    assert (back is not None) is older
    assert forward is not older

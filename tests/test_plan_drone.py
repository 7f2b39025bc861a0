"""Drone build planning, pure: final statuses only, commit and tag extracted for linking."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID

from handlers.models import BuildInfo, Event
from handlers.plan_drone import plan_drone

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "742f453b4b2e01d9941e1b71081bd3b3ca597274"


def build(status: str, ref: str = "refs/heads/main") -> Event:
    return Event(
        id=str(ULID()),
        source="drone",
        type="build",
        received_at=NOW,
        team="demo",
        repo="team-demo/hello",
        ref=ref,
        commit=SHA,
        build=BuildInfo(id=7, number=42, status=status, link="https://drone.example.com/team-demo/hello/42"),
        payload={"build": {"message": "fix: the thing\n", "after": SHA, "ref": ref}},
    )


def test_success_and_failure_are_final() -> None:
    ok = plan_drone(build("success"), now=NOW)
    assert ok.succeeded and ok.commit == SHA and ok.tag is None and ok.message == "fix: the thing"
    assert ok.reason == f"build success for {SHA[:12]}"
    for status in ("failure", "killed", "error"):
        failed = plan_drone(build(status), now=NOW)
        assert not failed.succeeded and failed.actions[0].decision.startswith(f"build {status}")


def test_tag_builds_carry_the_tag() -> None:
    plan = plan_drone(build("success", ref="refs/tags/1.4.2"), now=NOW)
    assert plan.tag == "1.4.2" and "(tag 1.4.2)" in plan.reason


def test_running_builds_record_nothing() -> None:
    plan = plan_drone(build("running"), now=NOW)
    assert "not final" in plan.reason and not plan.succeeded

"""Harbor push planning, pure: who tracks the pushed image and whether the tag is eligible."""

from __future__ import annotations

from datetime import UTC, datetime

from handlers.catalog import Catalog
from handlers.plan_harbor import plan_harbor, pushed_at
from tests.gitops_fixtures import IU, classic_app, harbor_event

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def catalog_with(*apps: dict) -> Catalog:
    catalog = Catalog({"harbor.external.io": "harbor.example.com"})
    for app in apps:
        catalog.upsert_application(app)
    return catalog


def test_matching_push_plans_an_update_per_tracking_application() -> None:
    second = classic_app("demo", "hello2", constraint="1")
    second["metadata"]["annotations"][f"{IU}/image-list"] = "h=harbor.example.com/team-demo/hello:~1"
    plan = plan_harbor(
        harbor_event("demo", "hello", "1.4.2", occur_at=1700000000),
        catalog_with(classic_app("demo", "hello"), second),
        now=NOW,
    )
    assert sorted(u.app for u in plan.updates) == ["team-demo-hello", "team-demo-hello2"]
    update = plan.updates[0]
    assert update.candidate.tag == "1.4.2" and update.candidate.pushed_at == 1700000000.0
    assert update.team == "demo" and "matches 2 workload(s)" in plan.reason


def test_no_matching_workload_is_recorded() -> None:
    plan = plan_harbor(
        harbor_event("demo", "unknown", "1.0.0"), catalog_with(classic_app("demo", "hello")), now=NOW
    )
    assert plan.updates == ()
    assert plan.actions[0].decision == "no matching workload" and plan.actions[0].at == NOW
    assert "harbor.example.com/team-demo/unknown" in plan.reason


def test_tag_rejected_by_constraint_is_recorded_with_the_reason() -> None:
    plan = plan_harbor(
        harbor_event("demo", "hello", "2.0.0"),
        catalog_with(classic_app("demo", "hello", constraint="1.4")),
        now=NOW,
    )
    assert plan.updates == ()
    assert plan.reason == "tag 2.0.0 rejected by constraint ~1.4"
    assert plan.actions[0].target == "team-demo-hello/team-demo-hello"


def test_harbor_external_host_alias_matches() -> None:
    plan = plan_harbor(
        harbor_event("demo", "hello", "1.4.2", host="harbor.external.io"),
        catalog_with(classic_app("demo", "hello")),
        now=NOW,
    )
    assert len(plan.updates) == 1


def test_untagged_artifact_deploys_nothing() -> None:
    event = harbor_event("demo", "hello", "sha256:" + "b" * 64)
    plan = plan_harbor(event, catalog_with(classic_app("demo", "hello")), now=NOW)
    assert plan.updates == () and "untagged" in plan.reason


def test_push_time_from_cloudevents_or_receipt() -> None:
    event = harbor_event("demo", "hello", "1.0.0")
    assert pushed_at(event.model_copy(update={"payload": {"time": "2024-05-14T09:28:03Z"}})) == 1715678883.0
    assert pushed_at(event.model_copy(update={"payload": {}})) == event.received_at.timestamp()

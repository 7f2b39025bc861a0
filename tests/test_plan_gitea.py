"""Gitea push planning, pure: which Applications a push refreshes or syncs, and why the others not."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ulid import ULID

from handlers.catalog import Catalog
from handlers.gitops_actions import WRITEBACK_MARKER
from handlers.models import Event
from handlers.plan_gitea import plan_gitea
from tests.gitops_fixtures import apl_app, classic_app

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "4522cbcefc20728a5b72b3a86af35e608622c514"
VALUES = "https://gitea.example.com/otomi/values.git"


def push(
    ref: str = "refs/heads/main",
    *,
    repo: str = "team-demo/hello",
    files: list[str] | None = None,
    before: str = "9836a96a253cce25d17988fcf41b8c4205cf779f",
    after: str = SHA,
    message: str = "fix: the thing\n",
    total: int | None = None,
) -> Event:
    payload: dict[str, Any] = {
        "ref": ref,
        "before": before,
        "after": after,
        "commits": [
            {
                "id": after,
                "message": message,
                "url": f"https://gitea.example.com/{repo}/commit/{after}",
                "added": [],
                "removed": [],
                "modified": files or [],
            }
        ],
        "total_commits": total if total is not None else 1,
        "head_commit": {
            "id": after,
            "message": message,
            "url": f"https://gitea.example.com/{repo}/commit/{after}",
        },
        "repository": {
            "full_name": repo,
            "clone_url": f"https://gitea.example.com/{repo}.git",
            "html_url": f"https://gitea.example.com/{repo}",
            "ssh_url": f"git@gitea.example.com:{repo}.git",
            "default_branch": "main",
            "owner": {"login": repo.split("/")[0]},
        },
        "pusher": {"login": "alice"},
    }
    return Event(
        id=str(ULID()),
        source="gitea",
        type="tag" if ref.startswith("refs/tags/") else "push",
        received_at=NOW,
        team="demo",
        repo=repo,
        ref=ref,
        commit=after,
        payload=payload,
    )


def app_on(
    name: str, revision: str, *, auto: bool = False, paths: str | None = None, repo: str = "team-demo/hello"
) -> dict:
    app = classic_app(
        "demo", name, repo_url=f"https://gitea.example.com/{repo}.git", path="chart", auto_sync=auto
    )
    app["spec"]["source"]["targetRevision"] = revision
    if paths is not None:
        app["metadata"]["annotations"]["argocd.argoproj.io/manifest-generate-paths"] = paths
    return app


def catalog_of(*apps: dict) -> Catalog:
    catalog = Catalog()
    for app in apps:
        catalog.upsert_application(app)
    return catalog


def test_branch_push_refreshes_auto_sync_apps_and_syncs_manual_ones() -> None:
    catalog = catalog_of(
        app_on("head", "HEAD", auto=True),
        app_on("main", "main"),
        app_on("dev", "develop"),
        app_on("tagged", "~1.4"),
    )
    plan = plan_gitea(push(), catalog, now=NOW)
    modes = {t.app: (t.mode, t.revision) for t in plan.triggers}
    assert modes == {"team-demo-head": ("refresh", None), "team-demo-main": ("sync", SHA)}
    reasons = {a.target: a.decision for a in plan.actions}
    assert reasons["team-demo-dev"] == "targetRevision develop does not follow branch main"
    assert reasons["team-demo-tagged"] == "targetRevision ~1.4 does not follow branch main"
    assert plan.commit is not None and plan.commit.sha == SHA and plan.commit.pusher == "alice"
    assert plan.commit.message == "fix: the thing\n" and plan.commit.team == "demo"


def test_tag_push_matches_exact_tags_and_semver_ranges() -> None:
    catalog = catalog_of(
        app_on("range", "~1.4"), app_on("exact", "1.4.2"), app_on("other", "2.x"), app_on("head", "HEAD")
    )
    plan = plan_gitea(push("refs/tags/1.4.2", files=[]), catalog, now=NOW)
    assert sorted(t.app for t in plan.triggers) == ["team-demo-exact", "team-demo-range"]


def test_manifest_generate_paths_filter() -> None:
    catalog = catalog_of(
        app_on("inside", "HEAD", paths="."),
        app_on("outside", "HEAD", paths="/other"),
        app_on("plain", "HEAD"),
    )
    plan = plan_gitea(push(files=["chart/values.yaml", "README.md"]), catalog, now=NOW)
    assert sorted(t.app for t in plan.triggers) == ["team-demo-inside", "team-demo-plain"]
    [skipped] = plan.actions
    assert skipped.target == "team-demo-outside" and "manifest-generate-paths /other" in skipped.decision
    # When Gitea capped the commit list, the file list is partial: refresh rather than miss a change.
    plan = plan_gitea(push(files=["README.md"], total=12), catalog, now=NOW)
    assert sorted(t.app for t in plan.triggers) == [
        "team-demo-inside",
        "team-demo-outside",
        "team-demo-plain",
    ]


def test_values_repo_push_concerns_apl_apps_through_their_ref_source() -> None:
    catalog = catalog_of(apl_app("demo", "hello", values_repo=VALUES))
    plan = plan_gitea(push(repo="otomi/values"), catalog, now=NOW)
    [trigger] = plan.triggers
    assert trigger.app == "team-demo-hello" and trigger.mode == "refresh" and trigger.revision is None


def test_deletions_and_test_deliveries_never_deploy() -> None:
    catalog = catalog_of(app_on("head", "HEAD"))
    deleted = plan_gitea(push("refs/tags/1.4.2", after="0" * 40), catalog, now=NOW)
    assert deleted.ignored and deleted.triggers == () and "deletions never deploy" in deleted.reason
    test = plan_gitea(push(before=SHA, after=SHA), catalog, now=NOW)
    assert test.ignored and "test delivery" in test.reason


def test_broker_write_back_commit_only_refreshes() -> None:
    catalog = catalog_of(app_on("main", "main"))
    plan = plan_gitea(
        push(message=f"build: automatic update [ci skip]\n{WRITEBACK_MARKER}\n"), catalog, now=NOW
    )
    [trigger] = plan.triggers
    assert trigger.mode == "refresh" and "own write-back" in trigger.why


def test_sync_of_manual_apps_can_be_turned_off_and_unknown_repos_are_said() -> None:
    plan = plan_gitea(push(), catalog_of(app_on("main", "main")), now=NOW, sync_manual_apps=False)
    assert plan.triggers[0].mode == "refresh"
    plan = plan_gitea(push(repo="team-demo/unknown"), catalog_of(app_on("main", "main")), now=NOW)
    assert plan.triggers == () and plan.reason == "no Application tracks team-demo/unknown"

"""The catalog model, pure: Otomi's exact Image Updater annotations, APL's ImageUpdater CR with a
two-source Application, registry aliases, and index upkeep as objects come and go."""

from __future__ import annotations

import copy

from handlers.catalog import Catalog
from handlers.catalog_parse import WriteBack
from tests.gitops_fixtures import IU, apl_app, apl_updater, classic_app

VALUES = "https://gitea.example.com/otomi/values.git"


def test_otomi_classic_annotations_semver() -> None:
    catalog = Catalog()
    catalog.upsert_application(classic_app("demo", "hello", constraint="1.4"))
    [match] = catalog.images_for("harbor.example.com/team-demo/hello")
    image = match.image
    assert match.app.name == "team-demo-hello" and match.app.team == "demo"
    assert (image.alias, image.strategy, image.constraint, image.fixed_tag) == (
        "team-demo-hello",
        "semver",
        "~1.4",
        None,
    )
    assert (image.helm_name, image.helm_tag) == ("image.repository", "image.tag")
    assert image.written_image == "harbor.example.com/team-demo/hello"
    assert image.write_back == WriteBack(
        method="git", secret="argocd/team-demo-gitea-repo-creds", branch="main", base_branch="main"
    )
    assert image.origin == "annotations" and image.problem is None


def test_otomi_classic_annotations_digest() -> None:
    catalog = Catalog()
    catalog.upsert_application(classic_app("demo", "web", strategy="digest", tag="main"))
    [match] = catalog.images_for("harbor.example.com/team-demo/web")
    assert (match.image.strategy, match.image.fixed_tag, match.image.constraint) == ("digest", "main", None)


def test_annotation_details_allow_ignore_target_and_unknown_strategy() -> None:
    app = classic_app(
        "demo",
        "hello",
        write_back="argocd",
        extra_annotations={
            f"{IU}/team-demo-hello.allow-tags": "regexp:^1\\.",
            f"{IU}/team-demo-hello.ignore-tags": "latest, dev-*",
            f"{IU}/write-back-target": "helmvalues:/values/hello.yaml",
            f"{IU}/git-branch": "main:image-updates",
        },
    )
    catalog = Catalog()
    catalog.upsert_application(app)
    image = catalog.tracked("team-demo-hello")[0]
    assert image.allow_tags == "regexp:^1\\." and image.ignore_tags == ("latest", "dev-*")
    assert image.write_back.method == "argocd" and image.write_back.target == "helmvalues:/values/hello.yaml"
    assert (image.write_back.base_branch, image.write_back.branch) == ("main", "image-updates")
    broken = copy.deepcopy(app)
    broken["metadata"]["annotations"][f"{IU}/team-demo-hello.update-strategy"] = "bogus"
    catalog.upsert_application(broken)
    assert "unknown update strategy" in (catalog.tracked("team-demo-hello")[0].problem or "")


def test_apl_image_updater_cr_with_two_source_application() -> None:
    catalog = Catalog()
    catalog.upsert_application(apl_app("demo", "hello", values_repo=VALUES))
    assert catalog.images_for("harbor.example.com/team-demo/hello") == []  # no CR yet
    catalog.upsert_image_updater(
        apl_updater("demo", [("hello", "semver", "1.12"), ("web", "digest", "main")], values_repo=VALUES)
    )
    [match] = catalog.images_for("harbor.example.com/team-demo/hello")
    image = match.image
    assert (image.strategy, image.constraint) == ("semver", "1.12")  # APL drops Otomi's `~`
    assert (image.helm_name, image.helm_tag) == ("image.repository", "image.tag")
    assert image.origin == "imageupdater/team-demo"
    assert image.write_back == WriteBack(
        method="git",
        branch="main",
        base_branch="main",
        repository=VALUES,
        target="helmvalues:/env/teams/demo/workloadValues/hello.managed.yaml",
    )
    # `web` is named by the CR but has no Application yet; adding it later picks the CR up.
    assert catalog.images_for("harbor.example.com/team-demo/web") == []
    catalog.upsert_application(apl_app("demo", "web", values_repo=VALUES))
    [web] = catalog.images_for("harbor.example.com/team-demo/web")
    assert (web.image.strategy, web.image.fixed_tag) == ("digest", "main")
    catalog.remove_image_updater("team-demo")
    assert catalog.images_for("harbor.example.com/team-demo/hello") == []


def test_glob_name_patterns_and_label_selectors() -> None:
    labelled = apl_app("demo", "api", values_repo=VALUES)
    labelled["metadata"]["labels"] = {"tier": "backend"}
    other = apl_app("demo", "ui", values_repo=VALUES)
    updater = apl_updater("demo", [("api", "newest-build", "")], values_repo=VALUES)
    ref = updater["spec"]["applicationRefs"][0]
    ref["namePattern"] = "team-demo-*"
    ref["labelSelectors"] = {"matchLabels": {"tier": "backend"}}
    ref["images"][0]["imageName"] = "harbor.example.com/team-demo/shared"
    catalog = Catalog()
    catalog.upsert_image_updater(updater)
    catalog.upsert_application(labelled)
    catalog.upsert_application(other)
    assert [m.app.name for m in catalog.images_for("harbor.example.com/team-demo/shared")] == [
        "team-demo-api"
    ]


def shared_image_updater(selector: object) -> dict:
    """One CR ref for every `team-demo-api-*` Application, with `selector` as its labelSelectors."""
    updater = apl_updater("demo", [("api", "newest-build", "")], values_repo=VALUES)
    ref = updater["spec"]["applicationRefs"][0]
    ref["namePattern"] = "team-demo-api-*"
    ref["labelSelectors"] = selector
    ref["images"][0]["imageName"] = "harbor.example.com/team-demo/shared"
    return updater


def test_label_selector_expressions_keep_their_applications_out() -> None:
    # A NotIn read as no selector at all would update the very Applications it excludes.
    catalog = Catalog()
    for name, labels in (("api-dev", {"env": "dev"}), ("api-prod", {"env": "prod"}), ("api-new", {})):
        app = apl_app("demo", name, values_repo=VALUES)
        app["metadata"]["labels"] = labels
        catalog.upsert_application(app)
    not_prod = {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}
    catalog.upsert_image_updater(shared_image_updater(not_prod))
    names = sorted(m.app.name for m in catalog.images_for("harbor.example.com/team-demo/shared"))
    assert names == ["team-demo-api-dev", "team-demo-api-new"]
    only_labelled = {"matchExpressions": [{"key": "env", "operator": "Exists"}]}
    catalog.upsert_image_updater(shared_image_updater(only_labelled))
    names = sorted(m.app.name for m in catalog.images_for("harbor.example.com/team-demo/shared"))
    assert names == ["team-demo-api-dev", "team-demo-api-prod"]


def test_an_invalid_label_selector_is_reported_on_each_image_it_names() -> None:
    catalog = Catalog()
    catalog.upsert_application(apl_app("demo", "api-dev", values_repo=VALUES))
    within = {"matchExpressions": [{"key": "env", "operator": "Within", "values": ["dev"]}]}
    catalog.upsert_image_updater(shared_image_updater(within))
    [match] = catalog.images_for("harbor.example.com/team-demo/shared")
    assert match.image.problem == (
        "team-demo's labelSelectors for 'team-demo-api-*' are invalid: "
        "matchExpressions[0]: unknown operator 'Within' (In, NotIn, Exists or DoesNotExist)"
    )


def test_an_image_updater_selects_applications_of_its_own_namespace() -> None:
    catalog = Catalog()
    catalog.upsert_application(apl_app("demo", "api-dev", values_repo=VALUES))
    updater = shared_image_updater(None)
    updater["spec"]["namespace"] = "elsewhere"  # deprecated, then removed: Image Updater ignores it
    catalog.upsert_image_updater(updater)
    [match] = catalog.images_for("harbor.example.com/team-demo/shared")
    assert match.app.name == "team-demo-api-dev"
    updater["metadata"]["namespace"] = "team-demo"
    catalog.upsert_image_updater(updater)
    assert catalog.images_for("harbor.example.com/team-demo/shared") == []


def test_registry_aliases_and_docker_hub_names() -> None:
    catalog = Catalog({"harbor.external.io": "harbor.example.com"})
    catalog.upsert_application(classic_app("demo", "hello"))
    assert len(catalog.images_for("harbor.external.io/team-demo/hello")) == 1
    assert len(catalog.images_for("HARBOR.EXAMPLE.COM/team-demo/hello")) == 1
    assert catalog.images_for("harbor.other.io/team-demo/hello") == []
    app = classic_app("demo", "nginx", extra_annotations={f"{IU}/image-list": "web=nginx:~1.25"})
    catalog.upsert_application(app)
    assert [m.image.alias for m in catalog.images_for("docker.io/library/nginx")] == ["web"]


def test_repo_index_follows_every_source_and_url_form() -> None:
    catalog = Catalog()
    catalog.upsert_application(apl_app("demo", "hello", values_repo=VALUES))
    catalog.upsert_application(
        classic_app("demo", "old", repo_url="https://gitea.example.com/otomi/charts.git")
    )
    assert [a.name for a in catalog.apps_for_repo("git@gitea.example.com:otomi/values")] == [
        "team-demo-hello"
    ]
    assert [a.name for a in catalog.apps_for_repo("https://GITEA.example.com/otomi/charts")] == [
        "team-demo-old"
    ]
    moved = classic_app("demo", "old", repo_url="https://gitea.example.com/team-demo/other.git")
    catalog.upsert_application(moved)
    assert catalog.apps_for_repo("https://gitea.example.com/otomi/charts.git") == []
    catalog.remove_application("team-demo-old")
    assert catalog.apps_for_repo("https://gitea.example.com/team-demo/other.git") == []
    assert catalog.app("team-demo-old") is None


def test_auto_sync_and_generate_paths_are_read() -> None:
    app = classic_app("demo", "hello", auto_sync=True)
    app["metadata"]["annotations"]["argocd.argoproj.io/manifest-generate-paths"] = "."
    catalog = Catalog()
    catalog.upsert_application(app)
    entry = catalog.app("team-demo-hello")
    assert entry is not None and entry.auto_sync and entry.generate_paths == "."
    app["spec"]["syncPolicy"]["automated"]["enabled"] = False
    catalog.upsert_application(app)
    assert catalog.app("team-demo-hello").auto_sync is False  # type: ignore[union-attr]


def test_replace_all_swaps_everything() -> None:
    catalog = Catalog()
    catalog.upsert_application(classic_app("demo", "gone"))
    catalog.replace_all(
        [apl_app("demo", "hello", values_repo=VALUES), classic_app("ops", "tool")],
        [apl_updater("demo", [("hello", "semver", "1.x")], values_repo=VALUES)],
    )
    assert catalog.app("team-demo-gone") is None and len(catalog) == 2
    assert len(catalog.images_for("harbor.example.com/team-demo/hello")) == 1
    assert len(catalog.images_for("harbor.example.com/team-ops/tool")) == 1
    assert catalog.images_for("harbor.example.com/team-demo/gone") == []

"""Write-back edits, pure: the Application JSON Patch (right source, forceString, resourceVersion test),
what an Application carries and runs, and git target files (paths, YAML safety, content)."""

from __future__ import annotations

import pytest
import yaml

from handlers.app_edits import (
    Deployed,
    ImageWrite,
    current_values,
    deployed_value,
    rollback_operation,
    writeback_patch,
)
from handlers.catalog import Catalog
from handlers.catalog_parse import TrackedImage, WriteBack
from handlers.image_strategies import Current
from handlers.values_edits import UnsafeTarget, current_in_file, edit_file, load_yaml, resolve_target
from tests.gitops_fixtures import IU, apl_app, apl_updater, classic_app

VALUES = "https://gitea.example.com/otomi/values.git"


def tracked(app: dict, updater: dict | None = None) -> TrackedImage:
    catalog = Catalog()
    if updater:
        catalog.upsert_image_updater(updater)
    catalog.upsert_application(app)
    return catalog.tracked(app["metadata"]["name"])[0]


def test_helm_parameters_replace_in_place_with_force_string_and_rv_test() -> None:
    app = classic_app(
        "demo", "hello", params=[{"name": "image.tag", "value": "1.4.1"}, {"name": "replicas", "value": "2"}]
    )
    app["metadata"]["resourceVersion"] = "42"
    image = tracked(app)
    ops = writeback_patch(app, [ImageWrite(image, "1.4.3", None, "1.4.3")])
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "42"}
    assert ops[1]["path"] == "/spec/source/helm/parameters"
    assert ops[1]["value"] == [
        {"name": "image.tag", "value": "1.4.3", "forceString": True},
        {"name": "replicas", "value": "2"},
        {"name": "image.repository", "value": "harbor.example.com/team-demo/hello", "forceString": True},
    ]
    app["spec"]["source"]["helm"]["parameters"] = ops[1]["value"]
    assert writeback_patch(app, [ImageWrite(image, "1.4.3", None, "1.4.3")]) == []  # already carried


def test_multi_source_apl_app_edits_the_chart_source_not_the_values_ref() -> None:
    app = apl_app("demo", "hello", values_repo=VALUES)
    image = tracked(app, apl_updater("demo", [("hello", "semver", "1.x")], values_repo=VALUES))
    ops = writeback_patch(app, [ImageWrite(image, "1.4.3", None, "1.4.3")])
    assert [op["path"] for op in ops] == ["/spec/sources/0/helm/parameters"]
    # With the values source listed first, the chart source (now index 1) is still the one edited.
    app["spec"]["sources"].reverse()
    assert [op["path"] for op in writeback_patch(app, [ImageWrite(image, "1.4.3", None, "1.4.3")])] == [
        "/spec/sources/1/helm/parameters"
    ]


def test_kustomize_images_and_digest_values() -> None:
    app = classic_app(
        "demo", "hello", extra_annotations={f"{IU}/team-demo-hello.kustomize.image-name": "hello"}
    )
    app["spec"]["source"].pop("helm")
    app["spec"]["source"]["kustomize"] = {
        "images": ["other:1.0", "hello=harbor.example.com/team-demo/hello:1.4.1"]
    }
    image = tracked(app)
    ops = writeback_patch(app, [ImageWrite(image, "main", "sha256:abc", "main@sha256:abc")])
    assert ops == [
        {
            "op": "add",
            "path": "/spec/source/kustomize/images",
            "value": ["other:1.0", "hello=harbor.example.com/team-demo/hello:main@sha256:abc"],
        }
    ]
    app["spec"]["source"]["kustomize"]["images"] = ops[0]["value"]
    assert current_values(app, image, {}) == [Current(tag="main", digest="sha256:abc")]


def test_current_values_include_what_runs() -> None:
    app = classic_app("demo", "hello", params=[{"name": "image.tag", "value": "1.4.1"}])
    app["status"] = {"summary": {"images": ["harbor.example.com/team-demo/hello:1.4.5", "busybox:1"]}}
    assert current_values(app, tracked(app), {}) == [Current(tag="1.4.1"), Current(tag="1.4.5")]


def _rollback_to(app: dict, tag: str, user: str = "alice") -> dict:
    """`argocd app rollback`'s operation: the history entry's source, here the app's with `tag`."""
    source = {**app["spec"]["source"], "helm": {"parameters": [{"name": "image.tag", "value": tag}]}}
    return {"sync": {"revision": "4f1c0de", "source": source}, "initiatedBy": {"username": user}}


def test_what_an_argo_cd_rollback_deploys_is_the_history_entry_s_value() -> None:
    app = classic_app("demo", "hello", params=[{"name": "image.tag", "value": "1.4.3"}])
    image = tracked(app)
    assert deployed_value(app, image) == Deployed(Current(tag="1.4.3"))
    app["status"] = {"operationState": {"operation": _rollback_to(app, "1.4.1"), "phase": "Succeeded"}}
    assert deployed_value(app, image) == Deployed(Current(tag="1.4.1"), by="an Argo CD rollback by alice")
    # A sync of the spec, in flight or done, is newer than the rollback and ends it.
    app["operation"] = {"sync": {"revision": "HEAD"}, "initiatedBy": {"username": "bob"}}
    assert rollback_operation(app) is None and deployed_value(app, image) == Deployed(Current(tag="1.4.3"))
    app["operation"] = _rollback_to(app, "1.4.0", user="carol")  # a rollback still in flight counts
    assert deployed_value(app, image) == Deployed(Current(tag="1.4.0"), by="an Argo CD rollback by carol")


def test_an_argo_cd_rollback_of_a_multi_source_application_reads_its_sources() -> None:
    app = apl_app("demo", "hello", values_repo=VALUES)
    updater = apl_updater("demo", [("hello", "semver", "1.12")], values_repo=VALUES)
    image = tracked(app, updater)
    sources = [dict(s) for s in app["spec"]["sources"]]
    chart = next(i for i, s in enumerate(sources) if not s.get("ref"))
    sources[chart] = {**sources[chart], "helm": {"parameters": [{"name": "image.tag", "value": "1.12.1"}]}}
    app["status"] = {
        "operationState": {"operation": {"sync": {"revision": "x", "sources": sources}}, "phase": "Running"}
    }
    assert deployed_value(app, image) == Deployed(Current(tag="1.12.1"), by="an Argo CD rollback by someone")


@pytest.mark.parametrize(
    ("target", "source_path", "expected"),
    [
        (
            "helmvalues:/env/teams/demo/workloadValues/hello.managed.yaml",
            "chart",
            ("helmvalues", "env/teams/demo/workloadValues/hello.managed.yaml"),
        ),
        ("helmvalues:values-prod.yaml", "chart", ("helmvalues", "chart/values-prod.yaml")),
        ("helmvalues", "chart", ("helmvalues", "chart/values.yaml")),
        ("kustomization:../base", "overlays/prod", ("kustomization", "overlays/base/kustomization.yaml")),
        (None, "chart", ("source-override", "chart/.argocd-source-team-demo-hello.yaml")),
        (None, "", ("source-override", ".argocd-source-team-demo-hello.yaml")),
    ],
)
def test_target_resolution(target: str | None, source_path: str, expected: tuple[str, str]) -> None:
    resolved = resolve_target(WriteBack(method="git", target=target), "team-demo-hello", source_path, False)
    assert (resolved.kind, resolved.path) == expected


@pytest.mark.parametrize(
    "target",
    [
        "helmvalues:/../outside.yaml",
        "helmvalues:../../etc/passwd",
        "helmvalues:/.git/config",
        "helmvalues:/a/../../b",
        "weird:x",
    ],
)
def test_targets_leaving_the_repository_are_refused(target: str) -> None:
    with pytest.raises(UnsafeTarget):
        resolve_target(WriteBack(method="git", target=target), "app", "chart", False)


def test_yaml_bombs_aliases_and_oversize_files_are_refused() -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    with pytest.raises(UnsafeTarget, match="aliases"):
        load_yaml(bomb)
    with pytest.raises(UnsafeTarget, match="larger"):
        load_yaml("k: " + "x" * (1024 * 1024 + 1))
    with pytest.raises(UnsafeTarget, match="mapping"):
        load_yaml("- a\n- b\n")
    with pytest.raises(UnsafeTarget, match="not valid YAML"):
        load_yaml("a: [\n")
    assert load_yaml("") == {} and load_yaml(None) == {}


def test_helm_values_file_edit_keeps_other_keys_and_is_idempotent() -> None:
    app = apl_app("demo", "hello", values_repo=VALUES)
    image = tracked(app, apl_updater("demo", [("hello", "semver", "1.x")], values_repo=VALUES))
    target = resolve_target(image.write_back, "team-demo-hello", "", False)
    old = "image:\n  pullPolicy: Always\n  tag: 1.4.1\nreplicaCount: 2\n"
    new = edit_file(target, old, [ImageWrite(image, "1.4.3", None, "1.4.3")])
    assert new is not None
    assert yaml.safe_load(new) == {
        "image": {"pullPolicy": "Always", "tag": "1.4.3", "repository": "harbor.example.com/team-demo/hello"},
        "replicaCount": 2,
    }
    assert edit_file(target, new, [ImageWrite(image, "1.4.3", None, "1.4.3")]) is None
    assert current_in_file(target, new, image) == Current(tag="1.4.3")
    assert current_in_file(target, None, image) == Current()


def test_argocd_source_override_file_like_image_updater() -> None:
    image = tracked(classic_app("demo", "hello"))
    target = resolve_target(image.write_back, "team-demo-hello", "chart", False)
    new = edit_file(target, None, [ImageWrite(image, "1.4.3", None, "1.4.3")])
    assert yaml.safe_load(new or "") == {
        "helm": {
            "parameters": [
                {
                    "name": "image.repository",
                    "value": "harbor.example.com/team-demo/hello",
                    "forceString": True,
                },
                {"name": "image.tag", "value": "1.4.3", "forceString": True},
            ]
        }
    }
    assert current_in_file(target, new, image) == Current(tag="1.4.3")

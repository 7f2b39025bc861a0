"""Argo CD's webhook matching rules, as pure functions: URL normalisation, targetRevision, and
manifest-generate-paths against the files a push changed."""

from __future__ import annotations

import pytest

from handlers.git_urls import (
    PushedRef,
    changed_files,
    files_match,
    normalize_repo_url,
    refresh_paths,
    revision_matches,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://gitea.example.com/team-demo/hello.git",
        "https://gitea.example.com/team-demo/hello",
        "HTTPS://Gitea.Example.com/Team-Demo/Hello.git/",
        "http://gitea.example.com:3000/team-demo/hello.git",
        "https://otomi-admin:s3cret@gitea.example.com/team-demo/hello.git",
        "git@gitea.example.com:team-demo/hello.git",
        "ssh://git@gitea.example.com:2222/team-demo/hello.git",
        "ssh://git@ssh.gitea.example.com/team-demo/hello",
    ],
)
def test_urls_of_one_repo_normalise_to_one_key(url: str) -> None:
    assert normalize_repo_url(url) == "gitea.example.com/team-demo/hello"


def test_different_repos_and_local_paths_stay_apart() -> None:
    assert normalize_repo_url("https://gitea.example.com/team-demo/hello2") != normalize_repo_url(
        "https://gitea.example.com/team-demo/hello"
    )
    assert normalize_repo_url("file:///srv/git/values.git") == normalize_repo_url("/srv/git/values")
    assert normalize_repo_url("/srv/git/values.git") != normalize_repo_url("https://srv/git/values.git")


MAIN = PushedRef.parse("refs/heads/main")
FEATURE = PushedRef.parse("refs/heads/feature/x")
TAG = PushedRef.parse("refs/tags/1.4.2")


@pytest.mark.parametrize(
    ("target", "pushed", "expected"),
    [
        ("HEAD", MAIN, True),  # HEAD follows the default branch
        ("", MAIN, True),
        ("HEAD", FEATURE, False),
        ("HEAD", TAG, False),  # a tag push does not move HEAD
        ("main", MAIN, True),
        ("refs/heads/main", MAIN, True),
        ("main", FEATURE, False),
        ("feature/x", FEATURE, True),
        ("1.4.2", TAG, True),
        ("refs/tags/1.4.2", TAG, True),
        ("1.4.3", TAG, False),
        ("~1.4", TAG, True),  # semver range against a tag
        (">=1.0.0 <1.4.0", TAG, False),
        ("1.x", TAG, True),
        ("~1.4", PushedRef.parse("refs/tags/v1.4.9"), True),
        ("~1.4", PushedRef.parse("refs/tags/1.4.3-rc.1"), False),  # no pre-release unless asked
        ("~1.4", PushedRef.parse("refs/heads/1.4.2"), False),  # ranges match tags only
    ],
)
def test_target_revision_matching(target: str, pushed: PushedRef, expected: bool) -> None:
    assert revision_matches(target, pushed, "main") is expected


def test_head_with_unknown_default_branch_matches_nothing() -> None:
    assert revision_matches("HEAD", MAIN, None) is False


def test_refresh_paths_resolve_relative_to_every_source_path() -> None:
    assert refresh_paths(None, ["apps/hello"]) is None
    assert refresh_paths(".", ["apps/hello"]) == ["/apps/hello"]
    assert refresh_paths(".;../shared;/global/values.yaml", ["apps/hello"]) == [
        "/apps/hello",
        "/apps/shared",
        "/global/values.yaml",
    ]
    assert refresh_paths("charts", ["a", "b"]) == ["/a/charts", "/b/charts"]


@pytest.mark.parametrize(
    ("paths", "files", "expected"),
    [
        (None, ["docs/readme.md"], True),  # no annotation: every push counts
        (["/apps/hello"], [], True),  # no file list: counts
        (["/apps/hello"], ["apps/hello/values.yaml"], True),
        (["/apps/hello"], ["apps/hello"], True),
        (["/apps/hello"], ["apps/hello2/values.yaml"], False),  # prefix of a name is not a parent dir
        (["/apps/hello"], ["docs/readme.md", "apps/other/x.yaml"], False),
        (["/apps/*/values.yaml"], ["apps/hello/values.yaml"], True),
        (["/"], ["anything"], True),
    ],
)
def test_files_match(paths: list[str] | None, files: list[str], expected: bool) -> None:
    assert files_match(paths, files) is expected


def test_changed_files_union_and_completeness() -> None:
    payload = {
        "commits": [
            {"added": ["a.txt"], "removed": [], "modified": ["b.txt"]},
            {"added": [], "removed": ["c.txt"], "modified": ["b.txt"]},
        ],
        "total_commits": 2,
    }
    assert changed_files(payload) == (["a.txt", "b.txt", "c.txt"], True)
    payload["total_commits"] = 9  # Gitea capped the list at 5 (here 2): we cannot know every file
    assert changed_files(payload)[1] is False

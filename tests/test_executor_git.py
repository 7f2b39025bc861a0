"""`git` write-back against real repositories on disk (a bare remote plus seeding clones), checked
with git itself: commit and push, no-op when the file already says it, a push race, new branches,
refused targets (symlink escape, YAML bomb), credentials kept out of the clone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from broker.errors import PermanentError
from broker.executors.git_writeback import GitWriter
from handlers.values_edits import load_yaml
from tests.gitops_fixtures import git, make_remote, show

MANAGED = "env/teams/demo/workloadValues/hello.managed.yaml"


def setter(tag: str):  # type: ignore[no-untyped-def]
    def edit(text: str | None) -> str | None:
        data = load_yaml(text)
        if (data.get("image") or {}).get("tag") == tag:
            return None
        data.setdefault("image", {})["tag"] = tag
        return yaml.safe_dump(data)

    return edit


@pytest.fixture
def writer(tmp_path: Path) -> GitWriter:
    return GitWriter(tmp_path / "work", author="webhook-broker <broker@test>", timeout_s=30)


def test_commit_and_push_then_no_op(tmp_path: Path, writer: GitWriter) -> None:
    bare, _ = make_remote(
        tmp_path, "values", {"env/teams/demo/workloadValues/hello.yaml": "replicaCount: 1\n"}
    )
    result = writer.write(
        repo_url=str(bare),
        branch="main",
        base_branch=None,
        path=f"/{MANAGED}",
        edit=setter("1.4.3"),
        message="build: update hello [ci skip]\n\nevent E1",
    )
    assert result.changed and result.commit and result.attempts == 1
    assert yaml.safe_load(show(bare, MANAGED)) == {"image": {"tag": "1.4.3"}}
    assert (
        git(bare, "log", "-1", "--format=%s|%an|%ae", "main").strip()
        == "build: update hello [ci skip]|webhook-broker|broker@test"
    )
    assert git(bare, "rev-parse", "main").strip() == result.commit
    again = writer.write(
        repo_url=str(bare), branch="main", base_branch=None, path=MANAGED, edit=setter("1.4.3"), message="x"
    )
    assert not again.changed and git(bare, "rev-list", "--count", "main").strip() == "2"


def test_push_race_is_retried_from_a_fresh_fetch(tmp_path: Path, writer: GitWriter) -> None:
    bare, seed = make_remote(tmp_path, "values", {"README.md": "hi\n"})
    rival_pushed = False
    inner = setter("1.4.3")

    def edit(text: str | None) -> str | None:
        nonlocal rival_pushed
        if not rival_pushed:  # someone else pushes between our fetch and our push
            rival_pushed = True
            (seed / "other.txt").write_text("rival\n")
            git(seed, "add", "-A")
            git(seed, "-c", "user.name=r", "-c", "user.email=r@r", "commit", "-q", "-m", "rival")
            git(seed, "push", "-q", "origin", "main")
        return inner(text)

    result = writer.write(
        repo_url=f"file://{bare}", branch="main", base_branch=None, path=MANAGED, edit=edit, message="ours"
    )
    assert result.changed and result.attempts == 2
    assert git(bare, "log", "--format=%s", "main").split() == ["ours", "rival", "seed"]
    assert show(bare, "other.txt") == "rival\n"


def test_new_branch_and_base_branch(tmp_path: Path, writer: GitWriter) -> None:
    bare, _ = make_remote(tmp_path, "values", {"README.md": "hi\n"})
    result = writer.write(
        repo_url=str(bare),
        branch="image-updates",
        base_branch="main",
        path=MANAGED,
        edit=setter("2.0.0"),
        message="m",
    )
    assert result.changed
    assert show(bare, "README.md", "image-updates") == "hi\n"  # branched off main
    assert "image-updates" in git(bare, "branch", "--list")
    fresh = writer.write(
        repo_url=str(bare),
        branch="brand-new",
        base_branch=None,
        path=MANAGED,
        edit=setter("2.0.1"),
        message="m",
    )
    assert fresh.changed and yaml.safe_load(show(bare, MANAGED, "brand-new")) == {"image": {"tag": "2.0.1"}}


def test_symlink_escape_and_yaml_bomb_are_refused(tmp_path: Path, writer: GitWriter) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    bare, seed = make_remote(tmp_path, "values", {"bomb.yaml": "a: &a [x, x]\nb: [*a, *a]\n"})
    (seed / "env").symlink_to(outside)
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "link")
    git(seed, "push", "-q", "origin", "main")
    with pytest.raises(PermanentError, match="leaves the repository"):
        writer.write(
            repo_url=str(bare),
            branch="main",
            base_branch=None,
            path="env/x.yaml",
            edit=setter("1"),
            message="m",
        )
    assert list(outside.iterdir()) == []
    with pytest.raises(PermanentError, match="aliases"):
        writer.write(
            repo_url=str(bare),
            branch="main",
            base_branch=None,
            path="bomb.yaml",
            edit=setter("1"),
            message="m",
        )
    with pytest.raises(PermanentError, match="leaves the repository"):
        writer.write(
            repo_url=str(bare),
            branch="main",
            base_branch=None,
            path=".git/config",
            edit=setter("1"),
            message="m",
        )


def test_credentials_reach_git_through_askpass_only(tmp_path: Path, writer: GitWriter) -> None:
    env = writer._env(("otomi-admin", "s3cret"))
    asked = [
        subprocess.run(
            [str(writer.askpass), prompt], env=env, capture_output=True, text=True, check=True
        ).stdout
        for prompt in (
            "Username for 'https://gitea.example.com': ",
            "Password for 'https://otomi-admin@gitea.example.com': ",
        )
    ]
    assert asked == ["otomi-admin", "s3cret"]
    bare, _ = make_remote(tmp_path, "values", {"README.md": "hi\n"})
    writer.write(
        repo_url=str(bare),
        branch="main",
        base_branch=None,
        path=MANAGED,
        edit=setter("1"),
        message="m",
        credentials=("u", "s3cret"),
    )
    configs = [p.read_text() for p in (tmp_path / "work").glob("*/.git/config")]
    assert configs and not any("s3cret" in c for c in configs)

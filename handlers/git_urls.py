"""Which Applications a git push concerns, the way Argo CD's own webhook handler decides it
(util/webhook): repo URLs compared after normalisation (scheme, user, port, `.git`, case), the pushed ref
against `targetRevision` (HEAD = default branch, branch, tag, semver range), and the changed files
against `argocd.argoproj.io/manifest-generate-paths`."""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from handlers.semver_range import parse_version, try_constraint

ZERO_SHA = re.compile(r"^0+$")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?!//)(?P<path>.*)$")
_URL = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?:(?P<user>[^@/]*)@)?(?P<host>[^/:]*)(?::\d*)?(?P<path>/.*)?$",
    re.IGNORECASE,
)


def normalize_repo_url(url: str) -> str:
    """A comparison key for a git remote: `https://u@Gitea.Example.com:443/Org/App.git/` and
    `git@gitea.example.com:org/app` both become `gitea.example.com/org/app`. Local paths and
    `file://` URLs keep their absolute path."""
    text = url.strip()
    lowered = text.lower()
    if lowered.startswith("file://"):
        path = text[len("file://") :]
        host = ""
    elif match := _URL.match(text):
        host, path = match.group("host") or "", match.group("path") or ""
    elif text.startswith("/"):
        host, path = "", text
    elif match := _SCP_LIKE.match(text):
        host, path = match.group("host"), match.group("path")
    else:
        host, path = "", text
    host = host.lower()
    for prefix in ("ssh.", "altssh."):  # GitHub/GitLab serve ssh on a sibling host name
        if host.startswith(prefix):
            host = host[len(prefix) :]
    path = path.strip("/")
    if path.lower().endswith(".git"):
        path = path[: -len(".git")]
    path = path.rstrip("/").lower()
    return f"{host}/{path}" if host else f"/{path}"


@dataclass(frozen=True)
class PushedRef:
    """`refs/heads/main` -> kind "branch", name "main"; `refs/tags/1.4.2` -> kind "tag"."""

    kind: str
    name: str

    @classmethod
    def parse(cls, ref: str) -> PushedRef:
        for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
            if ref.startswith(prefix):
                return cls(kind, ref[len(prefix) :])
        return cls("branch", ref)


def _strip_ref_prefix(revision: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if revision.startswith(prefix):
            return revision[len(prefix) :]
    return revision


def revision_matches(target_revision: str | None, pushed: PushedRef, default_branch: str | None) -> bool:
    """Argo CD's `sourceRevisionHasChanged`: HEAD (or empty) follows the default branch; otherwise the
    names must be equal (branch and tag alike), or the pushed name must satisfy a semver range."""
    target = (target_revision or "").strip()
    if target in ("", "HEAD"):
        return pushed.kind == "branch" and default_branch is not None and pushed.name == default_branch
    target = _strip_ref_prefix(target)
    if target == pushed.name:
        return True
    if pushed.kind != "tag":
        return False
    constraint = try_constraint(target)
    version = parse_version(pushed.name)
    return constraint is not None and version is not None and constraint.check(version)


def refresh_paths(annotation: str | None, source_paths: Sequence[str]) -> list[str] | None:
    """The paths named by `manifest-generate-paths` (`;`-separated; relative ones are resolved against
    every source path, `/x` is repo-rooted), or None when the annotation is absent."""
    if annotation is None:
        return None
    paths: list[str] = []
    for item in annotation.split(";"):
        item = item.strip()
        if not item:
            continue
        if item.startswith("/"):
            paths.append(posixpath.normpath(item))
            continue
        for base in source_paths or ("",):
            paths.append(posixpath.normpath(posixpath.join("/", base or "", item)))
    return paths


def files_match(paths: Sequence[str] | None, changed_files: Iterable[str]) -> bool:
    """Argo CD's `AppFilesHaveChanged`: no annotation, or no file list, means "changed"; otherwise a
    changed file must equal, sit under, or glob-match one of the paths."""
    if not paths:
        return True
    files = [posixpath.normpath(posixpath.join("/", f)) for f in changed_files]
    if not files:
        return True
    for changed in files:
        for path in paths:
            if changed == path or changed.startswith(path.rstrip("/") + "/") or path == "/":
                return True
            if fnmatch.fnmatchcase(changed, path):
                return True
    return False


def changed_files(payload: dict) -> tuple[list[str], bool]:
    """Files touched by a Gitea push, and whether the list is complete. Gitea caps `commits` (default 5);
    when `total_commits` says more were pushed the list is partial and must count as "changed"."""
    commits = payload.get("commits") or []
    files: list[str] = []
    seen: set[str] = set()
    for commit in commits:
        for key in ("added", "removed", "modified"):
            for name in commit.get(key) or []:
                if isinstance(name, str) and name not in seen:
                    seen.add(name)
                    files.append(name)
    total = payload.get("total_commits")
    complete = not (isinstance(total, int) and total > len(commits))
    return files, complete

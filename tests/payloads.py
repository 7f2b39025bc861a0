"""Payload builders: bytes exactly as each sender serialises them (WIRE-FORMATS.md §1.4-1.5, §2.4, §3.3-3.4).

Gitea: `json.MarshalIndent(p, "", "  ")`, no trailing newline. Drone and Harbor: compact `json.Marshal`.
All three are Go, so `<`, `>`, `&` come out as \\u003c, \\u003e, \\u0026 and other non-ASCII stays UTF-8.
Naming follows Otomi: org / Harbor project `team-demo`, repo `hello`, Harbor at `harbor.example.com`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

ZERO_SHA = "0" * 40
ZERO_SHA256 = "0" * 64
GITEA_URL = "https://gitea.example.com/"
DRONE_URL = "https://drone.example.com"
HARBOR_HOST = "harbor.example.com"


def fake_sha(seed: str) -> str:
    """A stable 40-hex id derived from `seed`, so tests can name commits."""
    return hashlib.sha1(seed.encode()).hexdigest()


BEFORE_SHA = fake_sha("before")
AFTER_SHA = fake_sha("after")
TAG_OBJECT_SHA = fake_sha("tag-object")
TAG_COMMIT_SHA = fake_sha("tag-commit")
DIGEST = "sha256:" + hashlib.sha256(b"hello-image").hexdigest()
CE_ID = "2b8d5c3e-7f1a-4e2b-9c6d-1a2b3c4d5e6f"


def go_json(obj: Any, *, indent: int | None = None) -> bytes:
    """Serialise like Go's encoding/json: HTML-escaped, UTF-8, compact or MarshalIndent-style."""
    separators = (",", ": ") if indent is not None else (",", ":")
    text = json.dumps(obj, ensure_ascii=False, indent=indent, separators=separators)
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode()


def gitea_json(obj: Any) -> bytes:
    return go_json(obj, indent=2)


# --- Gitea -------------------------------------------------------------------------------------------


def gitea_user(login: str) -> dict[str, Any]:
    return {
        "id": 1000 + sum(login.encode()) % 1000,
        "login": login,
        "login_name": "",
        "source_id": 0,
        "full_name": "",
        "email": f"{login}@noreply.gitea.example.com",
        "avatar_url": f"{GITEA_URL}avatars/{fake_sha(login)[:32]}",
        "html_url": f"{GITEA_URL}{login}",
        "language": "",
        "is_admin": False,
        "last_login": "0001-01-01T00:00:00Z",
        "created": "2024-01-10T08:00:00Z",
        "restricted": False,
        "active": False,
        "prohibit_login": False,
        "location": "",
        "website": "",
        "description": "",
        "visibility": "public",
        "followers_count": 0,
        "following_count": 0,
        "starred_repos_count": 0,
        "username": login,
    }


def gitea_repository(
    owner: str, repo: str, *, default_branch: str = "main", clone_url: str | None = None
) -> dict[str, Any]:
    html_url = f"{GITEA_URL}{owner}/{repo}"
    return {
        "id": 42,
        "owner": gitea_user(owner),
        "name": repo,
        "full_name": f"{owner}/{repo}",
        "description": "",
        "empty": False,
        "private": True,
        "fork": False,
        "template": False,
        "parent": None,
        "mirror": False,
        "size": 1024,
        "language": "",
        "languages_url": f"{GITEA_URL}api/v1/repos/{owner}/{repo}/languages",
        "html_url": html_url,
        "url": f"{GITEA_URL}api/v1/repos/{owner}/{repo}",
        "link": "",
        "ssh_url": f"git@gitea.example.com:{owner}/{repo}.git",
        "clone_url": clone_url or f"{html_url}.git",
        "original_url": "",
        "website": "",
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 1,
        "open_issues_count": 0,
        "open_pr_counter": 0,
        "release_counter": 0,
        "default_branch": default_branch,
        "archived": False,
        "created_at": "2024-01-10T08:00:00Z",
        "updated_at": "2024-05-14T07:28:03Z",
        "archived_at": "1970-01-01T00:00:00Z",
        "permissions": {"admin": True, "push": True, "pull": True},
        "has_issues": True,
        "has_wiki": True,
        "has_pull_requests": True,
        "has_projects": False,
        "has_releases": True,
        "has_packages": False,
        "has_actions": False,
        "default_merge_style": "merge",
        "avatar_url": "",
        "internal": False,
        "mirror_interval": "",
        "object_format_name": "sha1",
        "mirror_updated": "0001-01-01T00:00:00Z",
        "repo_transfer": None,
        "topics": [],
        "licenses": [],
    }


def gitea_commit(
    sha: str,
    *,
    owner: str,
    repo: str,
    message: str,
    author: str,
    added: Sequence[str] = (),
    removed: Sequence[str] = (),
    modified: Sequence[str] = (),
) -> dict[str, Any]:
    person = {"name": author.title(), "email": f"{author}@example.com", "username": author}
    return {
        "id": sha,
        "message": message,
        "url": f"{GITEA_URL}{owner}/{repo}/commit/{sha}",
        "author": person,
        "committer": person,
        "verification": None,
        "timestamp": "2024-05-14T09:28:03+02:00",
        "added": list(added),
        "removed": list(removed),
        "modified": list(modified),
    }


def _push(
    ref: str,
    before: str,
    after: str,
    commits: list[dict[str, Any]],
    head_commit: dict[str, Any] | None,
    compare_url: str,
    *,
    owner: str,
    repo: str,
    pusher: str,
    default_branch: str,
    clone_url: str | None = None,
) -> dict[str, Any]:
    user = gitea_user(pusher)
    return {
        "ref": ref,
        "before": before,
        "after": after,
        "compare_url": compare_url,
        "commits": commits,
        "total_commits": len(commits),
        "head_commit": head_commit,
        "repository": gitea_repository(owner, repo, default_branch=default_branch, clone_url=clone_url),
        "pusher": user,
        "sender": user,
    }


def gitea_push(
    *,
    owner: str = "team-demo",
    repo: str = "hello",
    ref: str = "refs/heads/main",
    before: str = BEFORE_SHA,
    after: str = AFTER_SHA,
    files_modified: Sequence[str] = (),
    files_added: Sequence[str] = (),
    files_removed: Sequence[str] = (),
    message: str = "Bump image to 1.4.2\n",
    pusher: str = "alice",
    default_branch: str = "main",
    clone_url: str | None = None,
    head_commit: bool = True,
) -> bytes:
    """A push of one commit `after` on `ref` (a branch by default). `head_commit=False` drops the
    key, as old Gitea versions did. Tests that need other edits `json.loads` it and use `gitea_json`."""
    files = {"added": files_added, "removed": files_removed, "modified": files_modified}
    commit = gitea_commit(after, owner=owner, repo=repo, message=message, author=pusher, **files)
    compare = f"{GITEA_URL}{owner}/{repo}/compare/{before}...{after}"
    where = {"owner": owner, "repo": repo, "pusher": pusher, "default_branch": default_branch}
    body = _push(ref, before, after, [commit], commit, compare, clone_url=clone_url, **where)
    if not head_commit:
        del body["head_commit"]
    return gitea_json(body)


def gitea_tag_push(
    *,
    tag: str = "1.4.2",
    owner: str = "team-demo",
    repo: str = "hello",
    after: str = TAG_OBJECT_SHA,
    commit: str | None = TAG_COMMIT_SHA,
    pusher: str = "alice",
    default_branch: str = "main",
    zeros: str = ZERO_SHA,
) -> bytes:
    """Creating a tag: before = zeros, no commits, head_commit = the peeled commit. With the defaults
    the tag is annotated (`after` is the tag object, `commit` the commit); `commit=None` makes it
    lightweight (both equal `after`)."""
    head = gitea_commit(commit or after, owner=owner, repo=repo, message=f"Release {tag}\n", author=pusher)
    compare = f"{GITEA_URL}{owner}/{repo}/compare/{zeros}...{after}"
    where = {"owner": owner, "repo": repo, "pusher": pusher, "default_branch": default_branch}
    return gitea_json(_push(f"refs/tags/{tag}", zeros, after, [], head, compare, **where))


def gitea_tag_delete(
    *,
    tag: str = "1.4.2",
    owner: str = "team-demo",
    repo: str = "hello",
    before: str = TAG_OBJECT_SHA,
    pusher: str = "alice",
    zeros: str = ZERO_SHA,
) -> bytes:
    """The push Gitea sends when a tag is deleted: after = zeros, head_commit null, compare_url = AppURL."""
    where = {"owner": owner, "repo": repo, "pusher": pusher, "default_branch": "main"}
    return gitea_json(_push(f"refs/tags/{tag}", before, zeros, [], None, GITEA_URL, **where))


def gitea_branch_delete_push(
    *,
    branch: str = "feature/x",
    owner: str = "team-demo",
    repo: str = "hello",
    before: str = BEFORE_SHA,
    pusher: str = "alice",
    zeros: str = ZERO_SHA,
) -> bytes:
    """The legacy (Gitea ≈1.9-1.11) push for a deleted branch: after = zeros, no commits."""
    where = {"owner": owner, "repo": repo, "pusher": pusher, "default_branch": "main"}
    return gitea_json(_push(f"refs/heads/{branch}", before, zeros, [], None, GITEA_URL, **where))


def gitea_test_delivery(
    *,
    owner: str = "team-demo",
    repo: str = "hello",
    default_branch: str = "main",
    pusher: str = "alice",
    sha: str = ZERO_SHA,
) -> bytes:
    """The UI's "Test Delivery": a push on the default branch with before == after. Newest Gitea uses
    zeros and a fake commit; older Gitea used the latest real commit (pass `sha`)."""
    message = "This is a fake commit for webhook push test\n"
    fake = gitea_commit(sha, owner=owner, repo=repo, message=message, author=pusher)
    compare = f"{GITEA_URL}{owner}/{repo}/compare/{sha}...{sha}"
    where = {"owner": owner, "repo": repo, "pusher": pusher, "default_branch": default_branch}
    return gitea_json(_push(f"refs/heads/{default_branch}", sha, sha, [fake], fake, compare, **where))


def gitea_create(
    ref: str = "1.4.2",
    ref_type: str = "tag",
    *,
    owner: str = "team-demo",
    repo: str = "hello",
    sha: str = TAG_OBJECT_SHA,
    sender: str = "alice",
) -> bytes:
    """`create` event: `ref` is the SHORT name (e.g. `1.4.2`, `feature/x`)."""
    repository = gitea_repository(owner, repo)
    repository["permissions"] = {"admin": False, "push": False, "pull": False}
    return gitea_json(
        {"sha": sha, "ref": ref, "ref_type": ref_type, "repository": repository, "sender": gitea_user(sender)}
    )


def gitea_delete(
    ref: str = "feature/x",
    ref_type: str = "branch",
    *,
    owner: str = "team-demo",
    repo: str = "hello",
    sender: str = "alice",
) -> bytes:
    """`delete` event: short `ref`, no sha at all."""
    return gitea_json(
        {
            "ref": ref,
            "ref_type": ref_type,
            "pusher_type": "user",
            "repository": gitea_repository(owner, repo),
            "sender": gitea_user(sender),
        }
    )


# --- Drone -------------------------------------------------------------------------------------------


def drone_repository(namespace: str, name: str, *, default_branch: str = "main") -> dict[str, Any]:
    html = f"{GITEA_URL}{namespace}/{name}"
    return {
        "id": 7,
        "uid": "42",
        "user_id": 1,
        "namespace": namespace,
        "name": name,
        "slug": f"{namespace}/{name}",
        "scm": "",
        "git_http_url": f"{html}.git",
        "git_ssh_url": f"git@gitea.example.com:{namespace}/{name}.git",
        "link": html,
        "default_branch": default_branch,
        "private": True,
        "visibility": "private",
        "active": True,
        "config_path": ".drone.yml",
        "trusted": False,
        "protected": False,
        "ignore_forks": False,
        "ignore_pull_requests": False,
        "auto_cancel_pull_requests": False,
        "auto_cancel_pushes": False,
        "auto_cancel_running": False,
        "timeout": 60,
        "counter": 12,
        "synced": 1707128301,
        "created": 1707128301,
        "updated": 1715671800,
        "version": 30,
        "archived": False,
    }


def drone_user(login: str = "alice") -> dict[str, Any]:
    return {
        "id": 1,
        "login": login,
        "email": f"{login}@example.com",
        "machine": False,
        "admin": False,
        "active": True,
        "avatar": "",
        "syncing": False,
        "synced": 1715671800,
        "created": 1707128301,
        "updated": 1715671800,
        "last_login": 1715671800,
    }


def drone_system() -> dict[str, Any]:
    return {"proto": "https", "host": "drone.example.com", "link": DRONE_URL, "version": "2.25.0"}


def drone_build(
    *,
    status: str = "success",
    build_id: int = 101,
    number: int = 12,
    after: str = AFTER_SHA,
    ref: str = "refs/heads/main",
    namespace: str = "team-demo",
    name: str = "hello",
    action: str = "updated",
    event: str = "push",
) -> bytes:
    """A `build:<action>` webhook; `event` is the build's trigger event (push, tag, ...). repo.build
    duplicates build, as Drone does."""
    branch = ref.rsplit("/", 1)[-1]
    build = {
        "id": build_id,
        "repo_id": 7,
        "trigger": "@hook",
        "number": number,
        "status": status,
        "event": event,
        "action": "",
        "link": f"{GITEA_URL}{namespace}/{name}/compare/{BEFORE_SHA}...{after}",
        "timestamp": 0,
        "message": "Bump image to 1.4.2\n",
        "before": BEFORE_SHA,
        "after": after,
        "ref": ref,
        "source_repo": "",
        "source": branch,
        "target": branch,
        "author_login": "alice",
        "author_name": "Alice",
        "author_email": "alice@example.com",
        "author_avatar": "",
        "sender": "alice",
        "started": 1715671810,
        "finished": 1715671890 if status not in {"pending", "running"} else 0,
        "created": 1715671805,
        "updated": 1715671890,
        "version": 4,
    }
    repo = drone_repository(namespace, name)
    repo["build"] = build
    body: dict[str, Any] = {"event": "build", "action": action}
    if action == "created":
        body["user"] = drone_user()
    body.update({"repo": repo, "build": build, "system": drone_system()})
    return go_json(body)


def drone_repo_event(*, action: str = "enabled", namespace: str = "team-demo", name: str = "hello") -> bytes:
    return go_json(
        {
            "event": "repo",
            "action": action,
            "user": drone_user(),
            "repo": drone_repository(namespace, name),
            "system": drone_system(),
        }
    )


def drone_user_event(*, action: str = "created", login: str = "bob") -> bytes:
    return go_json({"event": "user", "action": action, "user": drone_user(login), "system": drone_system()})


# --- Harbor ------------------------------------------------------------------------------------------


def harbor_resource_url(host: str, project: str, repo: str, tag: str | None, digest: str | None) -> str:
    if tag and not tag.startswith("sha256:"):
        return f"{host}/{project}/{repo}:{tag}"
    return f"{host}/{project}/{repo}@{digest}"


def harbor_resource(
    *,
    project: str = "team-demo",
    repo: str = "hello",
    tag: str | None = "1.4.2",
    digest: str | None = DIGEST,
    host: str = HARBOR_HOST,
) -> dict[str, Any]:
    """One entry of `event_data.resources[]` (keys omitted when empty, as Go's omitempty does)."""
    resource: dict[str, Any] = {}
    if digest:
        resource["digest"] = digest
    if tag:
        resource["tag"] = tag
    resource["resource_url"] = harbor_resource_url(host, project, repo, tag, digest)
    return resource


def harbor_repository(project: str, repo: str, *, date_created: int | None = 1707128301) -> dict[str, Any]:
    repository: dict[str, Any] = {}
    if date_created is not None:
        repository["date_created"] = date_created
    repository.update(
        {"name": repo, "namespace": project, "repo_full_name": f"{project}/{repo}", "repo_type": "private"}
    )
    return repository


def harbor_default(event_type: str, event_data: Mapping[str, Any], *, occur_at: int, operator: str) -> bytes:
    """A Default-format body around `event_data`."""
    return go_json({"type": event_type, "occur_at": occur_at, "operator": operator, "event_data": event_data})


def harbor_push(
    *,
    project: str = "team-demo",
    repo: str = "hello",
    tag: str | None = "1.4.2",
    digest: str | None = DIGEST,
    host: str = HARBOR_HOST,
    occur_at: int = 1715672090,
    event_type: str = "PUSH_ARTIFACT",
    resources: Sequence[Mapping[str, Any]] | None = None,
    operator: str = "robot$team-demo+drone",
    date_created: int | None = 1707128301,
) -> bytes:
    """An artifact event (push by default; also PULL_ARTIFACT/DELETE_ARTIFACT) in the Default format.
    `resources` replaces the single resource built from project/repo/tag/digest/host."""
    res = (
        [dict(r) for r in resources]
        if resources is not None
        else [harbor_resource(project=project, repo=repo, tag=tag, digest=digest, host=host)]
    )
    event_data = {"resources": res, "repository": harbor_repository(project, repo, date_created=date_created)}
    return harbor_default(event_type, event_data, occur_at=occur_at, operator=operator)


def harbor_delete(
    *,
    project: str = "team-demo",
    repo: str = "hello",
    tag: str | None = "1.4.2",
    digest: str | None = DIGEST,
    host: str = HARBOR_HOST,
    occur_at: int = 1715672190,
) -> bytes:
    return harbor_push(
        project=project,
        repo=repo,
        tag=tag,
        digest=digest,
        host=host,
        occur_at=occur_at,
        event_type="DELETE_ARTIFACT",
        operator="admin",
    )


def _scan_overview(severity: str, status: str) -> dict[str, Any]:
    return {
        "application/vnd.security.vulnerability.report; version=1.1": {
            "report_id": "5e64bc05-3102-11ea-93ae-0242ac140004",
            "scan_status": status,
            "severity": severity,
            "duration": 4,
            "summary": {"total": 3, "fixable": 2, "summary": {"High": 1, "Medium": 2}},
            "start_time": "2024-05-14T07:35:00Z",
            "end_time": "2024-05-14T07:35:04Z",
            "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "v0.50.1"},
            "complete_percent": 100,
        }
    }


def harbor_scan(
    *,
    event_type: str = "SCANNING_COMPLETED",
    project: str = "team-demo",
    repo: str = "hello",
    tag: str | None = "1.4.2",
    digest: str | None = DIGEST,
    host: str = HARBOR_HOST,
    occur_at: int = 1715672104,
    severity: str = "High",
) -> bytes:
    """SCANNING_COMPLETED / _FAILED / _STOPPED; no date_created, a scan_overview on the resource."""
    status = {"SCANNING_COMPLETED": "Success", "SCANNING_STOPPED": "Stopped"}.get(event_type, "Error")
    resource = harbor_resource(project=project, repo=repo, tag=tag, digest=digest, host=host)
    resource["scan_overview"] = _scan_overview(severity, status)
    event_data = {
        "resources": [resource],
        "repository": harbor_repository(project, repo, date_created=None),
        "scan": {"scan_type": "vulnerability"},
    }
    return harbor_default(event_type, event_data, occur_at=occur_at, operator="auto-scan")


def harbor_quota(
    *,
    event_type: str = "QUOTA_EXCEED",
    project: str = "team-demo",
    repo: str = "hello",
    tag: str | None = "1.4.2",
    digest: str | None = DIGEST,
    occur_at: int = 1715672300,
) -> bytes:
    """QUOTA_EXCEED / QUOTA_WARNING: resources carry only digest/tag; details in custom_attributes."""
    resource = {k: v for k, v in (("digest", digest), ("tag", tag)) if v}
    event_data = {
        "resources": [resource],
        "repository": harbor_repository(project, repo, date_created=None),
        "custom_attributes": {
            "Details": "adding 12.1 MiB of storage resource, which when updated to current usage of "
            "1.01 GiB will exceed the configured upper limit of 1.00 GiB."
        },
    }
    return harbor_default(event_type, event_data, occur_at=occur_at, operator="robot$team-demo+drone")


def harbor_replication(*, project: str = "team-demo", occur_at: int = 1715672400) -> bytes:
    """REPLICATION: no resources, no repository; the data sits in event_data.replication."""
    replication = {
        "harbor_hostname": HARBOR_HOST,
        "job_status": "Success",
        "description": "",
        "artifact_type": "image",
        "authentication_type": "basic",
        "override_mode": True,
        "trigger_type": "MANUAL",
        "policy_creator": "admin",
        "execution_timestamp": occur_at,
        "src_resource": {
            "registry_name": "Local",
            "registry_type": "harbor",
            "endpoint": f"https://{HARBOR_HOST}",
            "provider": "Harbor",
            "namespace": project,
        },
        "dest_resource": {
            "registry_name": "mirror",
            "registry_type": "harbor",
            "endpoint": "https://mirror.example.com",
            "provider": "Harbor",
            "namespace": project,
        },
        "successful_artifact": [
            {"type": "image", "status": "Success", "name_tag": "hello [1 item(s) in total]"}
        ],
    }
    return harbor_default("REPLICATION", {"replication": replication}, occur_at=occur_at, operator="admin")


def harbor_retention(*, project: str = "team-demo", occur_at: int = 1715672500) -> bytes:
    """TAG_RETENTION: no resources; the data sits in event_data.retention."""
    retention = {
        "total": 2,
        "retained": 1,
        "hostname": HARBOR_HOST,
        "project_name": project,
        "retention_policy_id": 1,
        "result": "SUCCESS",
        "deleted_artifact": [
            {"type": "image", "status": "SUCCESS", "name_tag": "hello:1.0.0", "digest": DIGEST}
        ],
    }
    return harbor_default("TAG_RETENTION", {"retention": retention}, occur_at=occur_at, operator="admin")


def harbor_cloudevent(
    *,
    event_type: str = "harbor.artifact.pushed",
    id: str = CE_ID,
    project: str = "team-demo",
    repo: str = "hello",
    tag: str | None = "1.4.2",
    digest: str | None = DIGEST,
    host: str = HARBOR_HOST,
    time: str = "2024-05-14T07:34:50Z",
    resources: Sequence[Mapping[str, Any]] | None = None,
    operator: str = "robot$team-demo+drone",
    requestid: str = "c7a3e1f0-5b2d-4a8e-9f1c-0d2e3f4a5b6c",
) -> bytes:
    """A CloudEvents-format (structured mode) body: `data` is the Default payload's `event_data`."""
    res = (
        [dict(r) for r in resources]
        if resources is not None
        else [harbor_resource(project=project, repo=repo, tag=tag, digest=digest, host=host)]
    )
    return go_json(
        {
            "specversion": "1.0",
            "id": id,
            "source": "/projects/3/webhook/policies/1",
            "type": event_type,
            "datacontenttype": "application/json",
            "time": time,
            "data": {"resources": res, "repository": harbor_repository(project, repo)},
            "operator": operator,
            "requestid": requestid,
        }
    )


# --- fuzzing -----------------------------------------------------------------------------------------


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (no NaN/Infinity, as no Go sender emits them)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=max_leaves,
    )


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    """`body` (a JSON object) with one value somewhere in it replaced by an arbitrary JSON value,
    or one key deleted: exercises the schema checks with payloads that are almost right."""
    data = json.loads(body)
    node: Any = data
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        if isinstance(node, dict) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(json_values())
        break
    return go_json(data)

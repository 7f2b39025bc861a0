"""`git` write-back: commit the new image to the configured file of the values repo and push it, with the
git CLI. One cached clone per remote under the work dir, guarded by a file lock (several workers on one
host); every write starts from the remote branch head, and a push rejected by a concurrent push is
retried from a fresh fetch. Credentials (the Secret's username/password) reach git through GIT_ASKPASS
and the environment, never the remote URL or the clone's config."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from broker.errors import PermanentError, TransientError
from handlers.values_edits import MAX_YAML_BYTES, UnsafeTarget

Edit = Callable[[str | None], str | None]
PUSH_ATTEMPTS = 3
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s' "$BROKER_GIT_USERNAME" ;;
  *) printf '%s' "$BROKER_GIT_PASSWORD" ;;
esac
"""


@dataclass
class GitResult:
    changed: bool
    commit: str | None
    attempts: int


class GitError(Exception):
    def __init__(self, args: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"git {' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()[:400]}"
        )
        self.stderr = result.stderr


class GitWriter:
    def __init__(self, work_dir: Path, *, author: str, timeout_s: float) -> None:
        self.work_dir = work_dir
        self.timeout_s = timeout_s
        name, _, email = author.partition("<")
        self.author_name = name.strip() or "webhook-broker"
        self.author_email = email.rstrip(">").strip() or "webhook-broker@localhost"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.askpass = self.work_dir / "askpass.sh"
        if not self.askpass.exists():
            self.askpass.write_text(_ASKPASS)
            self.askpass.chmod(0o700)

    def write(
        self,
        *,
        repo_url: str,
        branch: str,
        base_branch: str | None,
        path: str,
        edit: Edit,
        message: str,
        credentials: tuple[str | None, str | None] = (None, None),
    ) -> GitResult:
        """Apply `edit` (old text or None -> new text, or None for "nothing to change") to `path` on
        `branch` and push. Returns the pushed commit, or changed=False when the file already says it."""
        repo = self.work_dir / hashlib.sha256(repo_url.encode()).hexdigest()[:20]
        env = self._env(credentials)
        with self._locked(repo):
            self._prepare(repo, repo_url, env)
            base = base_branch or branch
            for attempt in range(1, PUSH_ATTEMPTS + 1):
                self._checkout(repo, base, env)
                target = self._safe_path(repo, path)
                try:
                    new = edit(self._read(target))
                except UnsafeTarget as exc:
                    raise PermanentError(str(exc)) from exc
                if new is None:
                    return GitResult(False, None, attempt)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(new)
                self._git(repo, env, "add", "--", path.lstrip("/"))
                self._git(
                    repo,
                    env,
                    "-c",
                    f"user.name={self.author_name}",
                    "-c",
                    f"user.email={self.author_email}",
                    "commit",
                    "-q",
                    "-m",
                    message,
                )
                commit = self._git(repo, env, "rev-parse", "HEAD").strip()
                try:
                    self._git(repo, env, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
                    return GitResult(True, commit, attempt)
                except GitError as exc:
                    if not _rejected(exc.stderr) or attempt == PUSH_ATTEMPTS:
                        raise _classify(exc) from exc
        raise TransientError(f"push to {branch} kept being rejected")  # pragma: no cover

    # --- helpers ------------------------------------------------------------------------------------

    def _env(self, credentials: tuple[str | None, str | None]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS=str(self.askpass))
        username, password = credentials
        env["BROKER_GIT_USERNAME"] = username or ""
        env["BROKER_GIT_PASSWORD"] = password or ""
        return env

    @contextmanager
    def _locked(self, repo: Path) -> Iterator[None]:
        with open(f"{repo}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _git(self, repo: Path, env: dict[str, str], *args: str) -> str:
        command = ["git", "-c", "credential.helper=", "-c", "core.hooksPath=/dev/null", *args]
        try:
            result = subprocess.run(
                command,
                cwd=repo,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TransientError(f"git {args[0]} timed out after {self.timeout_s}s") from exc
        if result.returncode != 0:
            raise GitError(list(args), result)
        return result.stdout

    def _prepare(self, repo: Path, repo_url: str, env: dict[str, str]) -> None:
        if not (repo / ".git").exists():
            repo.mkdir(parents=True, exist_ok=True)
            self._git(repo, env, "init", "-q")
            self._git(repo, env, "remote", "add", "origin", repo_url)
        else:
            self._git(repo, env, "remote", "set-url", "origin", repo_url)

    def _checkout(self, repo: Path, base: str, env: dict[str, str]) -> None:
        """Reset the clone to the remote branch head (or an empty tree when the branch is new)."""
        refspec = f"+refs/heads/{base}:refs/remotes/origin/{base}"
        try:
            self._git(repo, env, "fetch", "-q", "--prune", "origin", refspec)
            self._git(repo, env, "checkout", "-q", "-B", "broker-work", f"refs/remotes/origin/{base}")
            self._git(repo, env, "reset", "-q", "--hard", f"refs/remotes/origin/{base}")
        except GitError as exc:
            if "couldn't find remote ref" not in exc.stderr.lower():
                raise _classify(exc) from exc
            self._git(repo, env, "checkout", "-q", "--orphan", f"broker-new-{uuid.uuid4().hex[:12]}")
            self._git(repo, env, "rm", "-rfq", "--ignore-unmatch", ".")
        self._git(repo, env, "clean", "-fdqx")

    @staticmethod
    def _safe_path(repo: Path, path: str) -> Path:
        root = repo.resolve()
        target = (root / path.lstrip("/")).resolve()
        if target == root or root not in target.parents or (root / ".git") in (target, *target.parents):
            raise PermanentError(str(UnsafeTarget(f"write-back target {path!r} leaves the repository")))
        return target

    @staticmethod
    def _read(target: Path) -> str | None:
        if not target.exists():
            return None
        if target.stat().st_size > MAX_YAML_BYTES:
            raise PermanentError(f"write-back target {target.name} is larger than {MAX_YAML_BYTES} bytes")
        return target.read_text()


def _rejected(stderr: str) -> bool:
    text = stderr.lower()
    return "rejected" in text or "fetch first" in text or "non-fast-forward" in text


def _classify(exc: GitError) -> Exception:
    text = exc.stderr.lower()
    if "authentication failed" in text or "permission denied" in text or "403" in text:
        return PermanentError(str(exc))
    return TransientError(str(exc))

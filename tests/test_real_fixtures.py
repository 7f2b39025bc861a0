"""Replay payloads captured from real Gitea and Drone servers (gidgethub's `tests/samples` way).

Every file in the fixture folder is replayed; a new file without an expectation here fails the suite, so
the table cannot silently fall behind the folder. A missing folder is a failure, never a skip."""

from __future__ import annotations

import os
import re
import shlex
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from handlers import drone, drone_signature, gitea
from handlers.errors import SignatureError
from tests.conftest import DRONE_SECRET, GITEA_SECRET
from tests.signing import drone_headers, gitea_headers


def _fixture_dir() -> Path:
    """BROKER_REAL_FIXTURES, else a copy under tests/fixtures/real, else the shared folder."""
    configured = os.environ.get("BROKER_REAL_FIXTURES")
    if configured:
        return Path(configured)
    local = Path(__file__).parent / "fixtures" / "real"
    return local if local.is_dir() else Path("/work/shared/fixtures/real")


FIXTURES = _fixture_dir()
GITEA_DIR = FIXTURES / "gitea"
DRONE_DIR = FIXTURES / "drone"

# file → (X-Gitea-Event, type, ref, commit, ignored?)
GITEA_EXPECTED: dict[str, tuple[str, str, str, str | None, bool]] = {
    "push.json": ("push", "push", "refs/heads/master", "4522cbcefc20728a5b72b3a86af35e608622c514", False),
    "tag_create.json": (
        "create",
        "create",
        "refs/tags/v1.0.0",
        "599d25c67b05717269f50ac082b34f176d085179",
        True,
    ),
    "branch_create.json": ("create", "create", "refs/heads/feature", None, True),
    "tag_delete.json": ("delete", "tag_delete", "refs/tags/v1.0.0", None, True),
    "branch_delete.json": ("delete", "branch_delete", "refs/heads/feature", None, True),
}
# file → build status (all are build 2088 #189 of Diesel-Net/plex at cd82028…)
DRONE_EXPECTED = {
    "build_created.json": "pending",
    "build_updated.json": "running",
    "build_success.json": "success",
    "build_failure.json": "failure",
    "build_killed.json": "killed",
}
DRONE_COMMIT = "cd82028ba955cbd0cbe580dfbc0065d0b499a501"


def test_fixture_folder_is_fully_covered() -> None:
    assert FIXTURES.is_dir(), f"real fixtures not found at {FIXTURES} (set BROKER_REAL_FIXTURES)"
    assert {p.name for p in GITEA_DIR.glob("*.json")} == set(GITEA_EXPECTED)
    assert {p.name for p in DRONE_DIR.glob("*.json")} == set(DRONE_EXPECTED)
    assert {p.stem for p in DRONE_DIR.glob("*.sh")} == {Path(n).stem for n in DRONE_EXPECTED}


@pytest.mark.parametrize("name", sorted(GITEA_EXPECTED))
def test_gitea_capture(name: str) -> None:
    event, type_, ref, commit, ignored = GITEA_EXPECTED[name]
    body = (GITEA_DIR / name).read_bytes()
    headers = gitea_headers(body, GITEA_SECRET, event=event)
    gitea.check_content_type(headers)
    gitea.verify(headers, body, GITEA_SECRET)
    [incoming] = gitea.parse(headers, body)
    assert (incoming.type, incoming.ref, incoming.commit) == (type_, ref, commit)
    assert (incoming.repo, incoming.team) == ("gogits/hello-world", None)
    assert (incoming.ignore_reason is not None) == ignored


def _captured_headers(script: Path) -> tuple[dict[str, str], str]:
    """The -H headers of a capture's curl command, and the key named in its comment."""
    text = script.read_text()
    words = shlex.split(text.replace("\\\n", " "), comments=True)
    pairs = [words[i + 1].split(": ", 1) for i, word in enumerate(words[:-1]) if word == "-H"]
    headers = {name: value for name, value in pairs}
    match = re.search(r"signed with key: (\S+)", text)
    assert match, f"{script.name} names no key"
    return headers, match.group(1)


def _sent_at(headers: dict[str, str]) -> datetime:
    return parsedate_to_datetime(headers["Date"])


@pytest.mark.parametrize("name", sorted(DRONE_EXPECTED))
def test_drone_capture_as_sent_fails_on_digest_only(name: str) -> None:
    """Drone's own signature verifies (at the captured Date, with the capture's key), but the body was
    edited after capture, so the Digest check, which runs after the signature check, rejects it."""
    body = (DRONE_DIR / name).read_bytes()
    headers, key = _captured_headers(DRONE_DIR / f"{Path(name).stem}.sh")
    sig = drone_signature.signature_from_headers(headers)
    assert (
        drone_signature.compute_signature(key, drone_signature.signing_string(sig.headers, headers))
        == sig.signature
    )
    with pytest.raises(SignatureError, match="Digest header does not match the body"):
        drone.verify(headers, body, key, now=_sent_at(headers).timestamp(), max_skew_s=300)
    with pytest.raises(SignatureError, match="Drone signature does not match"):
        drone.verify(headers, body, DRONE_SECRET, now=_sent_at(headers).timestamp(), max_skew_s=300)


@pytest.mark.parametrize("name", sorted(DRONE_EXPECTED))
def test_drone_capture_resigned_parses(name: str) -> None:
    status = DRONE_EXPECTED[name]
    body = (DRONE_DIR / name).read_bytes()
    captured, _ = _captured_headers(DRONE_DIR / f"{Path(name).stem}.sh")
    headers = drone_headers(body, DRONE_SECRET, date=_sent_at(captured))
    drone.check_content_type(headers)
    drone.verify(headers, body, DRONE_SECRET, now=_sent_at(captured).timestamp() + 5, max_skew_s=300)
    [incoming] = drone.parse(headers, body)
    assert (incoming.type, incoming.delivery_id, incoming.dedup_keys) == (
        "build",
        f"2088:{status}",
        (f"drone:build:2088:{status}",),
    )
    assert (incoming.repo, incoming.team, incoming.ref, incoming.commit) == (
        "Diesel-Net/plex",
        None,
        "refs/heads/stable",
        DRONE_COMMIT,
    )
    assert incoming.build is not None and (incoming.build.number, incoming.build.status) == (189, status)
    assert (incoming.ignore_reason is None) == (status in drone.FINAL_STATUSES)

"""Container image references: split `[alias=]registry/repo[:tag][@digest]`, and a canonical key for a
repository so Harbor's `resource_url` and the image named in an Application compare equal (case, Docker
Hub's implicit `docker.io/library/`, and configured registry host aliases)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class ImageRef:
    alias: str | None
    repository: str  # registry host + path, as written (no tag, no digest)
    tag: str | None  # the text after ':' (a tag, or for Image Updater a constraint)
    digest: str | None


def split_image(text: str, *, with_alias: bool = True) -> ImageRef:
    """`hello=harbor.example.com:443/team-demo/hello:~1.4@sha256:...` -> alias, repository, tag, digest.
    An `=` only names an alias when it comes before any `/` or `:` (so `>=1.0` stays a constraint)."""
    text = text.strip()
    alias = None
    if with_alias and "=" in text:
        head, _, rest = text.partition("=")
        if head and "/" not in head and ":" not in head and rest:
            alias, text = head.strip(), rest.strip()
    digest = None
    if "@" in text:
        text, _, digest = text.partition("@")
    tag = None
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :] or None
    return ImageRef(alias=alias, repository=text, tag=tag, digest=digest or None)


def canonical_repository(repository: str, aliases: Mapping[str, str] | None = None) -> str:
    """`Harbor.External.io/Team-Demo/Hello` -> `harbor.internal/team-demo/hello` (with that alias);
    `nginx` -> `docker.io/library/nginx`."""
    repo = repository.strip().lower()
    for scheme in ("https://", "http://", "oci://"):
        if repo.startswith(scheme):
            repo = repo[len(scheme) :]
    repo = repo.strip("/")
    first, sep, rest = repo.partition("/")
    has_host = bool(sep) and ("." in first or ":" in first or first == "localhost")
    if not has_host:
        host, path = DOCKER_HUB, repo
    else:
        host, path = first, rest
    if host in _HUB_ALIASES:
        host = DOCKER_HUB
    if aliases:
        host = aliases.get(host, host)
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return f"{host}/{path}"


def image_text(repository: str, tag: str | None, digest: str | None) -> str:
    """`repo:tag@digest`, leaving out what is unknown."""
    text = repository
    if tag:
        text += f":{tag}"
    if digest:
        text += f"@{digest}"
    return text

"""Harbor's API, for the one fact its webhook leaves out: when a pushed image was built. `newest-build`
orders by the image config's `created`, as Image Updater does, and Harbor keeps it on the artifact:
`GET /api/v2.0/projects/{project}/repositories/{repository}/artifacts/{digest}` -> `extra_attrs.created`.
A repository name with slashes is URL-encoded twice (Harbor's API reference), and the credentials are a
robot account's (read access to the projects the broker deploys from)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from urllib.parse import quote

import urllib3


class HarborUnavailable(Exception):
    """Harbor could not say when an image was built (unreachable, refused, or no such artifact)."""


def artifact_path(image: str, digest: str) -> str:
    """The API path of `image` (`host/project/repo[/more]`, the host ignored: Harbor's external name may
    differ from the API's) at `digest`."""
    _host, _, path = image.partition("/")
    project, _, repository = path.partition("/")
    if not project or not repository:
        raise HarborUnavailable(f"{image} names no Harbor project and repository")
    project, repository = quote(project, safe=""), quote(quote(repository, safe=""), safe="")
    return f"/api/v2.0/projects/{project}/repositories/{repository}/artifacts/{quote(digest, safe=':')}"


def parse_created(text: str) -> float:
    """RFC 3339 as Harbor writes it, nanoseconds included (Python reads at most microseconds)."""
    stamp = text.strip().replace("Z", "+00:00")
    head, dot, rest = stamp.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        stamp = f"{head}.{rest[:digits][:6]}{rest[digits:]}"
    moment = datetime.fromisoformat(stamp)
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return moment.timestamp()


class HarborAPI:
    def __init__(self, base_url: str, credentials: str, *, verify_tls: bool = True, timeout_s: float = 5.0):
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(credentials.encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self.http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
            retries=False,
        )

    def built_at(self, image: str, digest: str) -> float:
        """When the image at `digest` was built (Unix seconds), from its config's `created`."""
        path = artifact_path(image, digest)
        try:
            response = self.http.request("GET", f"{self.base_url}{path}", headers=self.headers)
        except urllib3.exceptions.HTTPError as exc:
            raise HarborUnavailable(f"Harbor API unreachable: {exc}") from exc
        if response.status != 200:
            raise HarborUnavailable(f"Harbor API answered {response.status} for {image}@{digest[:19]}")
        try:
            created = json.loads(response.data)["extra_attrs"]["created"]
            return parse_created(str(created))
        except (ValueError, KeyError, TypeError) as exc:
            raise HarborUnavailable(f"Harbor API gave no build time for {image}@{digest[:19]}") from exc

#!/usr/bin/env python3
"""Point Gitea and Harbor at the broker: create the webhook, or update the one already there (idempotent).

Standard library only, so it runs anywhere Python 3.11 does. Secrets come from the environment, never from
arguments (they would show in `ps` and shell history). The request bodies are the JSON files beside it.

  gitea <org> [<repo>]   org hook (every repo of a team's org, e.g. team-demo) or one repo's hook
      env: GITEA_URL, GITEA_TOKEN (admin or org owner), BROKER_GITEA_SECRET
  harbor <project>       project webhook policy (project = team-<id> in APL)
      env: HARBOR_URL, HARBOR_USER, HARBOR_PASSWORD (project admin), BROKER_HARBOR_AUTH,
           HARBOR_PAYLOAD_FORMAT (Default | CloudEvents, default Default)
  both:  BROKER_URL (default http://webhook-broker.platform-broker.svc.cluster.local:8080)
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
DEFAULT_BROKER_URL = "http://webhook-broker.platform-broker.svc.cluster.local:8080"


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"register_webhooks: set {name}")
    return value


def _call(method: str, url: str, headers: dict[str, str], body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        raw = response.read()
    return json.loads(raw) if raw.strip() else None


def _template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / name).read_text())
    return loaded


def gitea(org: str, repo: str | None, broker_url: str) -> str:
    api = _env("GITEA_URL").rstrip("/") + "/api/v1"
    headers = {"Authorization": "token " + _env("GITEA_TOKEN"), "Accept": "application/json"}
    body = _template("gitea-webhook.json")
    body["config"]["url"] = broker_url + "/hooks/gitea"
    body["config"]["secret"] = _env("BROKER_GITEA_SECRET")
    hooks = f"{api}/repos/{quote(org)}/{quote(repo)}/hooks" if repo else f"{api}/orgs/{quote(org)}/hooks"
    url = body["config"]["url"]
    existing = [
        hook for hook in _call("GET", hooks, headers) or [] if hook.get("config", {}).get("url") == url
    ]
    if existing:
        # EditHookOption has no `type`; everything else is the same shape as CreateHookOption.
        edit = {key: value for key, value in body.items() if key != "type"}
        _call("PATCH", f"{hooks}/{existing[0]['id']}", headers, edit)
        return f"updated Gitea hook {existing[0]['id']} on {org}{'/' + repo if repo else ''}"
    created = _call("POST", hooks, headers, body)
    return f"created Gitea hook {created['id']} on {org}{'/' + repo if repo else ''}"


def harbor(project: str, broker_url: str) -> str:
    api = _env("HARBOR_URL").rstrip("/") + "/api/v2.0"
    basic = base64.b64encode(f"{_env('HARBOR_USER')}:{_env('HARBOR_PASSWORD')}".encode()).decode()
    # X-Is-Resource-Name: the path segment is a project name even if it looks like a number.
    headers = {"Authorization": "Basic " + basic, "X-Is-Resource-Name": "true", "Accept": "application/json"}
    payload_format = os.environ.get("HARBOR_PAYLOAD_FORMAT", "Default")
    if payload_format not in ("Default", "CloudEvents"):
        sys.exit("register_webhooks: HARBOR_PAYLOAD_FORMAT is Default or CloudEvents")
    cloudevents = payload_format == "CloudEvents"
    body = _template(
        "harbor-webhook-policy-cloudevents.json" if cloudevents else "harbor-webhook-policy.json"
    )
    for target in body["targets"]:
        target["address"] = broker_url + "/hooks/harbor"
        target["auth_header"] = _env("BROKER_HARBOR_AUTH")
    policies = f"{api}/projects/{quote(project)}/webhook/policies"
    existing = [p for p in _call("GET", policies, headers) or [] if p.get("name") == body["name"]]
    if existing:
        _call("PUT", f"{policies}/{existing[0]['id']}", headers, {**body, "id": existing[0]["id"]})
        return f"updated Harbor webhook policy {existing[0]['id']} on {project}"
    _call("POST", policies, headers, body)
    return f"created Harbor webhook policy {body['name']!r} on {project}"


def main(argv: list[str]) -> int:
    broker_url = os.environ.get("BROKER_URL", DEFAULT_BROKER_URL).rstrip("/")
    if len(argv) in (2, 3) and argv[0] == "gitea":
        print(gitea(argv[1], argv[2] if len(argv) == 3 else None, broker_url))
    elif len(argv) == 2 and argv[0] == "harbor":
        print(harbor(argv[1], broker_url))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

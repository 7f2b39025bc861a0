"""Argo CD REST mode (WIRE-FORMATS §4.1): `POST /api/v1/applications/{name}/sync` and
`GET /api/v1/applications/{name}?refresh=normal` with a (project-scoped) bearer token. Argo CD refuses a
sync while another operation is in progress (400 FailedPrecondition); that is waited for, then reported."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import urllib3

from broker.errors import PermanentError, TransientError
from broker.executors.sync_k8s import EVENT_INFO, SyncRequest, SyncResult

IN_PROGRESS = "another operation is already in progress"


class ArgoRest:
    def __init__(
        self, base_url: str, token: str, *, verify_tls: bool = True, timeout_s: float = 15.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.http = urllib3.PoolManager(
            cert_reqs="CERT_REQUIRED" if verify_tls else "CERT_NONE",
            timeout=urllib3.Timeout(connect=5.0, read=timeout_s),
            retries=False,
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}{path}"
        try:
            response = self.http.request(
                method,
                url,
                headers=self.headers,
                body=json.dumps(body).encode() if body is not None else None,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"Argo CD {method} {path}: {exc}") from exc
        try:
            data = json.loads(response.data or b"{}")
        except ValueError:
            data = {"message": response.data[:200].decode(errors="replace")}
        if response.status in (401, 403):
            raise PermanentError(
                f"Argo CD refused {method} {path}: {response.status} {data.get('message', '')}"
            )
        if response.status >= 500:
            raise TransientError(f"Argo CD {method} {path}: {response.status} {data.get('message', '')}")
        return response.status, data if isinstance(data, dict) else {}

    def get(self, app: str, *, refresh: str | None = None) -> dict[str, Any]:
        path = f"/api/v1/applications/{quote(app, safe='')}" + (f"?refresh={refresh}" if refresh else "")
        status, data = self._call("GET", path)
        if status != 200:
            raise PermanentError(f"Argo CD GET {app}: {status} {data.get('message') or data.get('error')}")
        return data

    def refresh(self, req: SyncRequest) -> SyncResult:
        started = time.time()
        self.get(req.app, refresh="normal")
        return SyncResult(
            True, "refresh", f"refresh requested via Argo CD API: {req.reason}", requested_at=started
        )

    def sync(
        self,
        req: SyncRequest,
        *,
        wait_inflight_s: float,
        poll_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> SyncResult:
        body: dict[str, Any] = {
            "name": req.app,
            "prune": False,
            "strategy": {"hook": {}},
            "infos": [
                {"name": EVENT_INFO, "value": req.event_id},
                {"name": "reason", "value": req.reason[:200]},
            ],
        }
        if req.revision:
            body["revision"] = req.revision
        deadline = time.monotonic() + wait_inflight_s
        path = f"/api/v1/applications/{quote(req.app, safe='')}/sync"
        while True:
            started = time.time()
            status, data = self._call("POST", path, body)
            if status == 200:
                return SyncResult(
                    True, "sync", f"sync requested via Argo CD API: {req.reason}", requested_at=started
                )
            message = str(data.get("message") or data.get("error") or "")
            if IN_PROGRESS in message:
                if time.monotonic() < deadline:
                    sleep(poll_s)
                    continue
                return SyncResult(
                    False, "sync", f"operation in flight: Argo CD says {message}", in_flight=True
                )
            raise PermanentError(f"Argo CD refused the sync of {req.app}: {status} {message}")

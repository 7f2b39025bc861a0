"""The only code that talks to the Kubernetes API for the GitOps core (kopf's `clients/` idea): Argo CD
Applications and ImageUpdater CRs in one namespace, and Secrets for git credentials. Client errors become
the worker's vocabulary: `Conflict` (lost a resourceVersion race), `NotFound`, `TransientError` (5xx,
timeouts, connection faults), `PermanentError` (refused: 401/403/400)."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from broker.errors import PermanentError, TransientError
from broker.settings import Settings

GROUP = "argoproj.io"
VERSION = "v1alpha1"
APPLICATIONS = "applications"
IU_GROUP = "argocd-image-updater.argoproj.io"
IU_VERSION = "v1alpha1"
IMAGE_UPDATERS = "imageupdaters"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5.0, 30.0)

T = TypeVar("T")


class Conflict(Exception):
    """The object changed under us (409, or a failed JSON Patch `test`): re-read and try again."""


class NotFound(Exception):
    pass


def load_api_client(settings: Settings) -> client.ApiClient | None:
    """BROKER_KUBECONFIG, else the in-cluster service account, else KUBECONFIG; None when none is set."""
    if settings.kubeconfig:
        return config.new_client_from_config(config_file=settings.kubeconfig)
    if (
        os.environ.get("KUBERNETES_SERVICE_HOST")
        and Path(config.incluster_config.SERVICE_TOKEN_FILENAME).exists()
    ):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    if os.environ.get("KUBECONFIG"):
        return config.new_client_from_config()
    return None


def _translate(exc: ApiException, what: str) -> Exception:
    status = exc.status or 0
    if status == 409 or (status == 422 and "test" in (exc.body or "").lower()):
        return Conflict(f"{what}: {exc.reason}")
    if status == 404:
        return NotFound(what)
    if status in (401, 403, 400, 422):
        return PermanentError(f"{what}: Kubernetes answered {status} {exc.reason}: {(exc.body or '')[:300]}")
    return TransientError(f"{what}: Kubernetes answered {status} {exc.reason}")


def call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ApiException as exc:
        raise _translate(exc, what) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientError(f"{what}: {exc}") from exc


def _dict(obj: object) -> dict[str, Any]:
    return obj if isinstance(obj, dict) else {}


class Kube:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    # --- Applications -----------------------------------------------------------------------------

    def get_app(self, name: str) -> dict[str, Any]:
        return _dict(
            call(
                f"get Application {name}",
                lambda: self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, APPLICATIONS, name, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        )

    def json_patch_app(self, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return self._patch_app(name, ops, JSON_PATCH)

    def merge_patch_app(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._patch_app(name, body, MERGE_PATCH)

    def _patch_app(self, name: str, body: Any, content_type: str) -> dict[str, Any]:
        return _dict(
            call(
                f"patch Application {name}",
                lambda: self.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    self.namespace,
                    APPLICATIONS,
                    name,
                    body,
                    _content_type=content_type,
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        )

    def list_objects(self, kind: str) -> tuple[list[dict[str, Any]], str | None]:
        group, version, plural = self._resource(kind)
        listing = _dict(
            call(
                f"list {plural}",
                lambda: self.custom.list_namespaced_custom_object(
                    group, version, self.namespace, plural, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        )
        return list(listing.get("items") or []), (listing.get("metadata") or {}).get("resourceVersion")

    def watch_objects(
        self, kind: str, resource_version: str | None, timeout_s: int, watcher: watch.Watch
    ) -> Iterator[dict[str, Any]]:
        """Raw watch events (`{"type", "raw_object"}`) for Applications or ImageUpdaters. The server ends
        the stream after `timeout_s`; a read timeout a little longer guards against a silent connection.
        `stop_watch(watcher)` from another thread ends it at once."""
        group, version, plural = self._resource(kind)
        stream = watcher.stream(
            self.custom.list_namespaced_custom_object,
            group,
            version,
            self.namespace,
            plural,
            resource_version=resource_version,
            timeout_seconds=timeout_s,
            allow_watch_bookmarks=True,
            _request_timeout=(5.0, timeout_s + 5.0),
        )
        yield from stream

    @staticmethod
    def stop_watch(watcher: watch.Watch) -> None:
        watcher.stop()
        response = getattr(watcher, "_resp", None)  # the open stream, if any
        if response is None:
            return
        try:
            response.shutdown()  # urllib3 >= 2.3: unblocks a reader in another thread
        except (AttributeError, ValueError, OSError):
            connection = getattr(response, "connection", None) or getattr(response, "_connection", None)
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _resource(kind: str) -> tuple[str, str, str]:
        if kind == APPLICATIONS:
            return GROUP, VERSION, APPLICATIONS
        return IU_GROUP, IU_VERSION, IMAGE_UPDATERS

    # --- Secrets ----------------------------------------------------------------------------------

    def secret_credentials(self, ref: str) -> tuple[str | None, str | None]:
        """`username`/`password` of the Secret `<ns>/<name>` (namespace defaults to Argo CD's)."""
        namespace, _, name = ref.rpartition("/")
        namespace = namespace or self.namespace
        secret = call(
            f"read Secret {namespace}/{name}",
            lambda: self.core.read_namespaced_secret(name, namespace, _request_timeout=REQUEST_TIMEOUT),
        )
        data = secret.data or {}

        def field(key: str) -> str | None:
            raw = data.get(key)
            return base64.b64decode(raw).decode() if raw else None

        return field("username"), field("password")

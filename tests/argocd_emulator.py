"""Test doubles for the GitOps core, all over real HTTP: kmock's KubernetesEmulator extended with
resourceVersions (409 on a stale update, a failing JSON Patch `test` answers 422), PUT, forced races,
watch expiry (410); a fake Argo CD application controller that runs operations on the emulator; and a
fake Argo CD REST server (aiohttp) backed by the same objects."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
from kmock import KubernetesEmulator
from kmock._internal import dicts, enums, k8s, rendering

APPS = "argoproj.io/v1alpha1/applications"
UPDATERS = "argocd-image-updater.argoproj.io/v1alpha1/imageupdaters"
SECRETS = "v1/secrets"
NS = "argocd"


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class ArgoEmulator(KubernetesEmulator):
    """`forced_conflicts`: the next N writes to Applications lose a race (another writer bumps the
    resourceVersion first), as a concurrent controller would make them. `patch_delay_s` slows writes
    down to widen races between workers."""

    forced_conflicts: int = 0
    failing_operations: int = 0  # the next N attempts to set `.operation` answer 503
    patch_delay_s: float = 0.0
    # Crash points: hold the next image write-back or `.operation` request ("write-back"/"operation")
    # either "before" it is applied (then answer 503: it never landed) or "after" it is applied (the answer
    # is held), until `released` is set. `holding` is set once a request is held.
    hold: tuple[str, str] | None = None
    holding: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    released: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    applied: list[tuple[str, str]] = attrs.field(factory=list, init=False)  # (app, what) that landed
    _versions: Any = attrs.field(factory=lambda: itertools.count(100), init=False)

    def seed(self, resource: str, name: str, obj: dict[str, Any], namespace: str = NS) -> None:
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        meta.setdefault("name", name)
        meta.setdefault("namespace", namespace)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[resource, namespace, name] = body

    def exists(self, resource: str, name: str, namespace: str = NS) -> bool:
        key = self._key(resource, namespace, name)
        return key in self.objects and not self.objects[key].deleted

    def raw(self, resource: str, name: str, namespace: str = NS) -> dict[str, Any]:
        return copy.deepcopy(self.objects[resource, namespace, name].raw)

    async def change(
        self, resource: str, name: str, patch: dict[str, Any], namespace: str = NS
    ) -> dict[str, Any]:
        """A change made by someone else (the controller, a person): merge patch, new resourceVersion,
        and a MODIFIED watch event."""
        async with self._lock:
            return await self._store(self._key(resource, namespace, name), patch)

    async def expire_watches(self, resource: str) -> None:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "code": 410,
            "reason": "Expired",
            "message": "too old",
        }
        await self._buses[self._key(resource, NS, "")[0]].put({"type": "ERROR", "object": status})

    def _key(self, resource: str, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
        from kmock._internal.references import resource as ref

        return ref(resource), namespace, name

    async def _store(
        self, key: tuple[Any, str | None, str], patch: Any, *, replace: bool = False
    ) -> dict[str, Any]:
        obj = self.objects[key]
        current = copy.deepcopy(obj.raw)
        if replace:
            new = copy.deepcopy(patch)
        elif isinstance(patch, list):
            new = jsonpatch.apply_patch(current, patch)
        else:
            new = dicts.merge_patch_dict(current, patch)
        new.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        obj.history.append(new)
        await self._buses[key[0]].put({"type": "MODIFIED", "object": copy.deepcopy(new)})
        return new

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.name and request.action == enums.action.FETCH:
            # Fast path: kmock's generic reaction matching costs ~30 ms a request, too slow to load-test with.
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                raise k8s.KubernetesObjectNotFoundError()
            return aiohttp.web.json_response(self.objects[key].raw)
        writing = request.method in (enums.method.PATCH, enums.method.PUT)
        if request.resource is None or request.name is None or not writing or request.subresource:
            return await super()._handle(request)
        if self.patch_delay_s:
            await asyncio.sleep(self.patch_delay_s)
        key = (request.resource, request.namespace, request.name)
        what = _patch_kind(request.data)
        if what and self.hold == (what, "before"):
            await self._held()
            raise k8s.KubernetesError(status=503, reason="ServiceUnavailable", message="never applied")
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                raise k8s.KubernetesObjectNotFoundError()
            current = self.objects[key].raw
            version = (current.get("metadata") or {}).get("resourceVersion")
            if self.forced_conflicts > 0 and request.resource.plural == "applications":
                self.forced_conflicts -= 1
                await self._store(
                    key, {"metadata": {"annotations": {"racing-writer": str(next(self._versions))}}}
                )
                raise k8s.KubernetesError(
                    status=409, reason="Conflict", message="the object has been modified"
                )
            data = request.data
            sets_operation = isinstance(data, list) and any(op.get("path") == "/operation" for op in data)
            if sets_operation and self.failing_operations > 0:
                self.failing_operations -= 1
                raise k8s.KubernetesError(
                    status=503, reason="ServiceUnavailable", message="etcd is having a moment"
                )
            if isinstance(data, list):
                try:
                    jsonpatch.apply_patch(copy.deepcopy(current), data)
                except jsonpatch.JsonPatchTestFailed as exc:
                    raise k8s.KubernetesError(
                        status=422, reason="Invalid", message=f"test failed: {exc}"
                    ) from None
                new = await self._store(key, data)
                if what:
                    self.applied.append((request.name, what))
            else:
                wanted = ((data or {}).get("metadata") or {}).get("resourceVersion")
                if wanted and wanted != version:
                    raise k8s.KubernetesError(
                        status=409, reason="Conflict", message="the object has been modified"
                    )
                new = await self._store(key, data or {}, replace=request.method == enums.method.PUT)
        if what and self.hold == (what, "after"):
            await self._held()
        return aiohttp.web.json_response(new)

    async def _held(self) -> None:
        self.hold = None
        self.holding.set()
        await self.released.wait()

    async def _serve_watch(self, request: rendering.Request):  # type: ignore[no-untyped-def,override]
        """As the base, but an ERROR event (e.g. 410 Gone) is passed on and ends the stream."""
        yield b""
        async with self._lock:
            listed = [
                obj.raw
                for (res, ns, _), obj in self.objects.items()
                if res == request.resource and not obj.deleted and ns == request.namespace
            ]
        for obj in listed:
            yield {"type": "ADDED", "object": obj}
        async for event in self._buses[request.resource]:
            if event.get("type") == "ERROR":
                yield event
                return
            meta = (event.get("object") or {}).get("metadata") or {}
            if request.namespace is None or meta.get("namespace") == request.namespace:
                yield event


def _patch_kind(data: Any) -> str | None:
    """What a JSON Patch of an Application does: an image write-back, a sync request, or neither."""
    if not isinstance(data, list):
        return None
    paths = [str(op.get("path", "")) for op in data if isinstance(op, dict)]
    if "/operation" in paths:
        return "operation"
    if any("/helm" in path or "/kustomize" in path for path in paths):
        return "write-back"
    return None


class FakeController:
    """Plays Argo CD's application controller: takes `.operation`, runs it (Running), finishes it
    (`outcome`), and reports health through `health_steps` (e.g. Knative Progressing, then Healthy).
    Auto-sync Applications are synced after a refresh or a spec change."""

    def __init__(
        self,
        emu: ArgoEmulator,
        *,
        outcome: str = "Succeeded",
        health_steps: tuple[tuple[str, str, list[dict[str, Any]]], ...] = (("Healthy", "", []),),
        run_s: float = 0.05,
    ) -> None:
        self.emu = emu
        self.outcome = outcome
        self.health_steps = health_steps
        self.run_s = run_s
        self.operations: list[tuple[str, dict[str, Any]]] = []
        self._specs: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._busy: set[str] = set()
        self._runs: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FakeController:
        for (res, _, name), obj in list(self.emu.objects.items()):
            if res.plural == "applications" and not obj.deleted:
                self._specs[name] = copy.deepcopy(obj.raw.get("spec"))
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        while True:
            for (res, _, name), obj in list(self.emu.objects.items()):
                if res.plural != "applications" or obj.deleted or name in self._busy:
                    continue
                raw = obj.raw
                automated = ((raw.get("spec") or {}).get("syncPolicy") or {}).get("automated") is not None
                refresh = ((raw.get("metadata") or {}).get("annotations") or {}).get(
                    "argocd.argoproj.io/refresh"
                )
                spec_changed = self._specs.get(name) != raw.get("spec")
                if raw.get("operation"):
                    self._start(name, raw["operation"])
                elif automated and (refresh or spec_changed):
                    auto = {"initiatedBy": {"automated": True}, "sync": {"revision": "auto"}}
                    self._start(name, auto, clear_refresh=bool(refresh))
                elif refresh:
                    await self.emu.change(
                        APPS, name, {"metadata": {"annotations": {"argocd.argoproj.io/refresh": None}}}
                    )
                self._specs[name] = copy.deepcopy(raw.get("spec"))
            await asyncio.sleep(0.01)

    def _start(self, name: str, operation: dict[str, Any], clear_refresh: bool = False) -> None:
        self._busy.add(name)
        self.operations.append((name, copy.deepcopy(operation)))
        self._runs.add(asyncio.create_task(self._run(name, operation, clear_refresh)))

    async def _run(self, name: str, operation: dict[str, Any], clear_refresh: bool) -> None:
        started = stamp()
        patch: dict[str, Any] = {
            "operation": None,
            "status": {"operationState": {"operation": operation, "phase": "Running", "startedAt": started}},
        }
        if clear_refresh:
            patch["metadata"] = {"annotations": {"argocd.argoproj.io/refresh": None}}
        await self.emu.change(APPS, name, patch)
        await asyncio.sleep(self.run_s)
        revision = (operation.get("sync") or {}).get("revision") or "abc123"
        for health, message, resources in self.health_steps:
            state = {
                "operation": operation,
                "phase": self.outcome,
                "startedAt": started,
                "finishedAt": stamp(),
                "message": f"sync {self.outcome.lower()}",
                "syncResult": {"revision": revision},
            }
            status = {
                "operationState": state,
                "health": {"status": health, "message": message},
                "resources": resources,
            }
            await self.emu.change(APPS, name, {"status": status})
            await asyncio.sleep(self.run_s)
        self._specs[name] = copy.deepcopy(self.emu.raw(APPS, name).get("spec"))
        self._busy.discard(name)


def argocd_rest_app(
    emu: ArgoEmulator, token: str, calls: list[tuple[str, str, Any]]
) -> aiohttp.web.Application:
    """The slice of argocd-server the broker uses: sync (refused while an operation is in progress),
    get with optional refresh. Bearer token required."""

    def check(request: aiohttp.web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {token}":
            raise aiohttp.web.HTTPUnauthorized(
                text='{"error":"invalid session","code":16}', content_type="application/json"
            )

    def app_or_404(name: str) -> dict[str, Any]:
        if not emu.exists(APPS, name):
            raise aiohttp.web.HTTPNotFound(
                text='{"error":"not found","code":5}', content_type="application/json"
            )
        return emu.raw(APPS, name)

    async def sync(request: aiohttp.web.Request) -> aiohttp.web.Response:
        check(request)
        name = request.match_info["name"]
        body = await request.json()
        calls.append(("sync", name, body))
        app = app_or_404(name)
        state = ((app.get("status") or {}).get("operationState") or {}).get("phase")
        if app.get("operation") or state == "Running":
            return aiohttp.web.json_response(
                {
                    "error": "another operation is already in progress",
                    "code": 9,
                    "message": "another operation is already in progress",
                },
                status=400,
            )
        operation = {
            "initiatedBy": {"username": "proj:team-demo:ci-role"},
            "info": body.get("infos") or [],
            "sync": {"revision": body.get("revision") or "", "prune": body.get("prune", False)},
        }
        return aiohttp.web.json_response(await emu.change(APPS, name, {"operation": operation}))

    async def get(request: aiohttp.web.Request) -> aiohttp.web.Response:
        check(request)
        name = request.match_info["name"]
        refresh = request.query.get("refresh")
        calls.append(("get", name, refresh))
        app_or_404(name)
        if refresh:
            await emu.change(
                APPS, name, {"metadata": {"annotations": {"argocd.argoproj.io/refresh": refresh}}}
            )
        return aiohttp.web.json_response(emu.raw(APPS, name))

    web = aiohttp.web.Application()
    web.router.add_post("/api/v1/applications/{name}/sync", sync)
    web.router.add_get("/api/v1/applications/{name}", get)
    return web


async def eventually(predicate: Callable[[], Any], timeout_s: float = 5.0, interval_s: float = 0.02) -> Any:
    """Poll until `predicate()` is truthy (on the event loop, so servers keep serving)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)

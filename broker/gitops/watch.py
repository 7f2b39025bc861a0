"""Keeps the catalog current: list Applications and ImageUpdaters, then watch each from the listed
resourceVersion; when the server says the version is too old (410 Gone) or the stream errors, list again.
One daemon thread per resource kind; `close()` stops them within one watch timeout. `on_deleted` hears of
each Application deleted while watched (its rollback pins go with it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from broker.errors import PermanentError, TransientError
from broker.kube import APPLICATIONS, IMAGE_UPDATERS, Kube, NotFound
from handlers.catalog import Catalog

log = logging.getLogger(__name__)


class CatalogWatch:
    def __init__(
        self,
        kube: Kube,
        catalog: Catalog,
        *,
        timeout_s: int = 300,
        backoff_s: float = 1.0,
        on_deleted: Callable[[str], object] = lambda name: None,
    ) -> None:
        self.kube = kube
        self.catalog = catalog
        self.on_deleted = on_deleted
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.relists = 0
        self._threads: list[threading.Thread] = []
        self._watchers = {APPLICATIONS: watch.Watch(), IMAGE_UPDATERS: watch.Watch()}

    def start(self) -> None:
        """Start the watch threads; the first listing happens there (see `ready`), so an unreachable
        API server at start-up delays processing instead of crashing the worker."""
        for kind in (APPLICATIONS, IMAGE_UPDATERS):
            thread = threading.Thread(
                target=self._run, args=(kind,), name=f"catalog-watch-{kind}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def relist(self) -> dict[str, str | None]:
        """Replace the whole catalog from fresh listings; returns the resourceVersion of each."""
        apps, apps_rv = self.kube.list_objects(APPLICATIONS)
        try:
            updaters, updaters_rv = self.kube.list_objects(IMAGE_UPDATERS)
        except NotFound:  # the ImageUpdater CRD is not installed (Image Updater v0.x or none)
            updaters, updaters_rv = [], None
        self.catalog.replace_all(apps, updaters)
        self.relists += 1
        self.ready.set()
        return {APPLICATIONS: apps_rv, IMAGE_UPDATERS: updaters_rv}

    def close(self) -> None:
        self.stopping.set()
        for watcher in self._watchers.values():
            self.kube.stop_watch(watcher)
        for thread in self._threads:
            thread.join(timeout=0.1)

    def _apply(self, kind: str, event: dict[str, Any]) -> None:
        obj = event.get("raw_object") or event.get("object") or {}
        if not isinstance(obj, dict):
            return
        name = str((obj.get("metadata") or {}).get("name") or "")
        kind_of_change = event.get("type")
        if kind == APPLICATIONS:
            if kind_of_change == "DELETED":
                self.catalog.remove_application(name)
                self.on_deleted(name)
            elif kind_of_change in ("ADDED", "MODIFIED"):
                self.catalog.upsert_application(obj)
        elif kind_of_change == "DELETED":
            self.catalog.remove_image_updater(name)
        elif kind_of_change in ("ADDED", "MODIFIED"):
            self.catalog.upsert_image_updater(obj)

    def _run(self, kind: str) -> None:
        version: str | None = None
        need_list = kind == APPLICATIONS  # that thread lists both kinds first; the other waits for it
        if kind != APPLICATIONS:
            while not self.ready.wait(0.2):
                if self.stopping.is_set():
                    return
        while not self.stopping.is_set():
            try:
                if need_list:
                    version = self.relist()[kind]
                    need_list = False
                for event in self.kube.watch_objects(kind, version, self.timeout_s, self._watchers[kind]):
                    if self.stopping.is_set():
                        return
                    if event.get("type") == "BOOKMARK":
                        version = ((event.get("raw_object") or {}).get("metadata") or {}).get(
                            "resourceVersion"
                        )
                        continue
                    self._apply(kind, event)
                    obj = event.get("raw_object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
            except ApiException as exc:
                if exc.status == 404 and kind == IMAGE_UPDATERS:  # no CRD: nothing to watch
                    self.stopping.wait(self.timeout_s)
                    continue
                # 410 Gone: our resourceVersion is too old; anything else: start over as well.
                log.info("catalog watch of %s ended with %s; listing again", kind, exc.status)
                need_list = True
                self.stopping.wait(self.backoff_s if exc.status != 410 else 0)
            except (TransientError, PermanentError, NotFound) as exc:
                log.warning("catalog re-list of %s failed: %s", kind, exc)
                need_list = True
                self.stopping.wait(self.backoff_s)
            except Exception as exc:  # a dropped or silent stream: resume from the last version
                log.info("catalog watch of %s interrupted: %s", kind, exc)
                if self.stopping.wait(self.backoff_s):
                    return
                need_list = version is None

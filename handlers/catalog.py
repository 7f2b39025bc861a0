"""The catalog of tracked workloads: Argo CD Applications with the images Image Updater would follow for
them (annotations or `ImageUpdater` CRs), indexed by canonical image repository and by normalised git
URL, so one lookup costs the same with 100 or 10,000 Applications.

One writer (the catalog watch) and many readers (workers): every index value is an immutable tuple that
the writer replaces whole, so a reader never sees a container change under it."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.catalog_parse import (
    AppEntry,
    AppSource,
    TrackedImage,
    UpdaterEntry,
    UpdaterRef,
    WriteBack,
    parse_application,
    parse_image_updater,
)
from handlers.git_urls import normalize_repo_url
from handlers.image_refs import canonical_repository

__all__ = ["AppEntry", "AppSource", "Catalog", "Match", "TrackedImage", "WriteBack"]


@dataclass(frozen=True, slots=True)
class Match:
    app: AppEntry
    image: TrackedImage


class Catalog:
    def __init__(self, aliases: Mapping[str, str] | None = None) -> None:
        self.aliases: dict[str, str] = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
        self._apps: dict[str, AppEntry] = {}
        self._images: dict[str, tuple[TrackedImage, ...]] = {}  # app -> effective tracked images
        self._by_image: dict[str, tuple[str, ...]] = {}
        self._by_repo: dict[str, tuple[str, ...]] = {}
        self._updaters: dict[str, UpdaterEntry] = {}
        self._exact_refs: dict[str, tuple[tuple[str, UpdaterRef], ...]] = {}  # app name -> (updater, ref)
        self._glob_refs: tuple[tuple[str, UpdaterRef], ...] = ()

    # --- reads ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._apps)

    def app(self, name: str) -> AppEntry | None:
        return self._apps.get(name)

    def apps(self) -> list[AppEntry]:
        return list(self._apps.values())

    def tracked(self, app: str) -> tuple[TrackedImage, ...]:
        return self._images.get(app, ())

    def image_key(self, repository: str) -> str:
        return canonical_repository(repository, self.aliases)

    def images_for(self, repository: str) -> list[Match]:
        """Every (Application, tracked image) following this image repository (aliases applied)."""
        key = self.image_key(repository)
        found: list[Match] = []
        for name in self._by_image.get(key, ()):
            app = self._apps.get(name)
            if app is None:
                continue
            found.extend(Match(app, image) for image in self._images.get(name, ()) if image.image == key)
        return found

    def apps_for_repo(self, url: str) -> list[AppEntry]:
        """Applications with a source whose repoURL normalises to the same key as `url`."""
        names = self._by_repo.get(normalize_repo_url(url), ())
        return [app for name in names if (app := self._apps.get(name)) is not None]

    # --- writes (the watch) -----------------------------------------------------------------------

    def upsert_application(self, obj: Mapping[str, Any]) -> None:
        entry = parse_application(obj, self.aliases)
        if entry is None:
            return
        old = self._apps.get(entry.name)
        self._apps[entry.name] = entry
        self._reindex_repos(entry.name, old, entry)
        self._refresh_images(entry.name)

    def remove_application(self, name: str) -> None:
        old = self._apps.pop(name, None)
        if old is None:
            return
        self._reindex_repos(name, old, None)
        self._refresh_images(name)

    def upsert_image_updater(self, obj: Mapping[str, Any]) -> None:
        entry = parse_image_updater(obj, self.aliases)
        if entry is None:
            return
        before = self._apps_of_updater(self._updaters.get(entry.name))
        self._updaters[entry.name] = entry
        self._rebuild_refs()
        for name in before | self._apps_of_updater(entry):
            self._refresh_images(name)

    def remove_image_updater(self, name: str) -> None:
        old = self._updaters.pop(name, None)
        if old is None:
            return
        self._rebuild_refs()
        for app in self._apps_of_updater(old):
            self._refresh_images(app)

    def replace_all(
        self, applications: Iterable[Mapping[str, Any]], updaters: Iterable[Mapping[str, Any]]
    ) -> None:
        """A full re-list: build fresh indexes aside, then swap them in."""
        fresh = Catalog(self.aliases)
        for obj in updaters:
            entry = parse_image_updater(obj, self.aliases)
            if entry is not None:
                fresh._updaters[entry.name] = entry
        fresh._rebuild_refs()
        for obj in applications:
            app = parse_application(obj, self.aliases)
            if app is not None:
                fresh._apps[app.name] = app
        repos: dict[str, list[str]] = {}
        images: dict[str, list[str]] = {}
        for app in fresh._apps.values():
            for key in {src.repo_key for src in app.sources}:
                repos.setdefault(key, []).append(app.name)
            tracked = fresh._effective_images(app)
            if tracked:
                fresh._images[app.name] = tracked
                for key in {image.image for image in tracked}:
                    images.setdefault(key, []).append(app.name)
        fresh._by_repo = {key: tuple(names) for key, names in repos.items()}
        fresh._by_image = {key: tuple(names) for key, names in images.items()}
        (self._apps, self._images, self._by_image, self._by_repo, self._updaters) = (
            fresh._apps,
            fresh._images,
            fresh._by_image,
            fresh._by_repo,
            fresh._updaters,
        )
        self._exact_refs, self._glob_refs = fresh._exact_refs, fresh._glob_refs

    # --- internals --------------------------------------------------------------------------------

    def _rebuild_refs(self) -> None:
        exact: dict[str, list[tuple[str, UpdaterRef]]] = {}
        globs: list[tuple[str, UpdaterRef]] = []
        for name in sorted(self._updaters):
            for ref in self._updaters[name].refs:
                if ref.exact:
                    exact.setdefault(ref.name_pattern, []).append((name, ref))
                else:
                    globs.append((name, ref))
        self._exact_refs = {key: tuple(value) for key, value in exact.items()}
        self._glob_refs = tuple(globs)

    def _apps_of_updater(self, entry: UpdaterEntry | None) -> set[str]:
        if entry is None:
            return set()
        names: set[str] = set()
        for ref in entry.refs:
            if ref.exact:
                if ref.name_pattern in self._apps:
                    names.add(ref.name_pattern)
            else:
                names.update(name for name in self._apps if fnmatch.fnmatchcase(name, ref.name_pattern))
        return names

    def _ref_applies(self, updater: str, ref: UpdaterRef, app: AppEntry) -> bool:
        entry = self._updaters.get(updater)
        if entry is None or (
            entry.target_namespace and app.namespace and entry.target_namespace != app.namespace
        ):
            return False
        return ref.selector.matches(dict(app.labels))

    def _effective_images(self, app: AppEntry) -> tuple[TrackedImage, ...]:
        """Annotations, then every matching CR ref; a CR image replaces an annotation image of the same
        alias (Image Updater v1 reads the CR)."""
        chosen: dict[str, TrackedImage] = {image.alias: image for image in app.annotation_images}
        refs = list(self._exact_refs.get(app.name, ()))
        refs += [(u, r) for u, r in self._glob_refs if fnmatch.fnmatchcase(app.name, r.name_pattern)]
        for updater, ref in refs:
            if self._ref_applies(updater, ref, app):
                for image in ref.images:
                    chosen[image.alias] = image
        return tuple(chosen.values())

    def _refresh_images(self, name: str) -> None:
        app = self._apps.get(name)
        old_keys = {image.image for image in self._images.get(name, ())}
        tracked = self._effective_images(app) if app is not None else ()
        if tracked:
            self._images[name] = tracked
        else:
            self._images.pop(name, None)
        new_keys = {image.image for image in tracked}
        for key in old_keys - new_keys:
            self._drop(self._by_image, key, name)
        for key in new_keys - old_keys:
            self._add(self._by_image, key, name)

    def _reindex_repos(self, name: str, old: AppEntry | None, new: AppEntry | None) -> None:
        old_keys = {src.repo_key for src in old.sources} if old else set()
        new_keys = {src.repo_key for src in new.sources} if new else set()
        for key in old_keys - new_keys:
            self._drop(self._by_repo, key, name)
        for key in new_keys - old_keys:
            self._add(self._by_repo, key, name)

    @staticmethod
    def _add(index: dict[str, tuple[str, ...]], key: str, name: str) -> None:
        current = index.get(key, ())
        if name not in current:
            index[key] = (*current, name)

    @staticmethod
    def _drop(index: dict[str, tuple[str, ...]], key: str, name: str) -> None:
        remaining = tuple(n for n in index.get(key, ()) if n != name)
        if remaining:
            index[key] = remaining
        else:
            index.pop(key, None)

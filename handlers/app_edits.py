"""Image Updater's `argocd` write-back as a pure function: from a live Application object and the images
to write, the JSON Patch that sets Helm parameters (`forceString: true`) or Kustomize images on the
right source (multi-source Applications: the chart source, never APL's `ref: values` source), guarded by
a resourceVersion test. Also what the Application carries and runs now, for the no-downgrade rule, and what
it deploys after an Argo CD rollback, for rollback pins."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from handlers.catalog_parse import TrackedImage
from handlers.image_refs import canonical_repository, split_image
from handlers.image_strategies import Current, split_tag_value

DEFAULT_HELM_NAME = "image.name"  # Image Updater's defaults; Otomi always names its own
DEFAULT_HELM_TAG = "image.tag"


@dataclass(frozen=True)
class ImageWrite:
    image: TrackedImage
    tag: str
    digest: str | None
    value: str  # what goes into the tag parameter (`tag` or `tag@digest`)

    @property
    def full(self) -> str:
        """`repository:value` (value may carry `@digest`)."""
        return f"{self.image.written_image}:{self.value}"


def _is_ref_only(source: Mapping[str, Any]) -> bool:
    return bool(source.get("ref")) and not source.get("path") and not source.get("chart")


def is_kustomize(source: Mapping[str, Any], image: TrackedImage) -> bool:
    if image.kustomize_name:
        return True
    return "kustomize" in source and "helm" not in source and not source.get("chart")


def select_source(app: Mapping[str, Any], image: TrackedImage) -> tuple[str, dict[str, Any]] | None:
    """JSON Pointer of the source to edit and the source itself; None when there is none."""
    spec = app.get("spec") or {}
    if spec.get("sources"):
        indexed = [
            (i, s) for i, s in enumerate(spec["sources"]) if isinstance(s, Mapping) and not _is_ref_only(s)
        ]
        if not indexed:
            return None
        names = {image.helm_name or DEFAULT_HELM_NAME, image.helm_tag or DEFAULT_HELM_TAG, image.helm_spec}

        def score(item: tuple[int, Mapping[str, Any]]) -> tuple[int, int, int]:
            _, src = item
            params = {p.get("name") for p in ((src.get("helm") or {}).get("parameters") or [])}
            kustomize_fit = int(bool(image.kustomize_name) == ("kustomize" in src))
            return (int(bool(names & params)), kustomize_fit, -item[0])

        index, source = max(indexed, key=score)
        return f"/spec/sources/{index}", dict(source)
    if isinstance(spec.get("source"), Mapping):
        return "/spec/source", dict(spec["source"])
    return None


def helm_parameters(
    existing: Sequence[Mapping[str, Any]], writes: Sequence[ImageWrite]
) -> list[dict[str, Any]]:
    """Merge the image parameters into a Helm parameter list, replacing same-name entries in place."""
    params = [dict(p) for p in existing]
    for write in writes:
        image = write.image
        if image.helm_spec:
            wanted = {image.helm_spec: write.full}
        else:
            wanted = {
                image.helm_name or DEFAULT_HELM_NAME: image.written_image,
                image.helm_tag or DEFAULT_HELM_TAG: write.value,
            }
        for name, value in wanted.items():
            entry = {"name": name, "value": value, "forceString": True}
            for idx, param in enumerate(params):
                if param.get("name") == name:
                    params[idx] = entry
                    break
            else:
                params.append(entry)
    return params


def kustomize_images(existing: Sequence[str], writes: Sequence[ImageWrite]) -> list[str]:
    """Set `[name=]repository:tag` entries in a Kustomize image list, replacing the one for this image."""
    images = list(existing)
    for write in writes:
        name = write.image.kustomize_name or write.image.written_image
        entry = write.full if name == write.image.written_image else f"{name}={write.full}"
        for idx, current in enumerate(images):
            ref = split_image(current)
            if (ref.alias or ref.repository) == name:
                images[idx] = entry
                break
        else:
            images.append(entry)
    return images


def _list_op(
    pointer: str, source: Mapping[str, Any], section: str, key: str, edit: Callable[[list[Any]], list[Any]]
) -> list[dict[str, Any]]:
    """The op setting `<source>/<section>/<key>` to `edit(current list)`, or none when unchanged."""
    before = list((source.get(section) or {}).get(key) or [])
    after = edit(before)
    if after == before:
        return []
    if section not in source:
        return [{"op": "add", "path": f"{pointer}/{section}", "value": {key: after}}]
    return [{"op": "add", "path": f"{pointer}/{section}/{key}", "value": after}]


def writeback_patch(app: Mapping[str, Any], writes: Sequence[ImageWrite]) -> list[dict[str, Any]]:
    """JSON Patch for an `argocd` write-back, or [] when the Application already carries every value.
    The first op tests `metadata.resourceVersion`, so a concurrent change makes the patch fail (409/422)
    instead of being overwritten."""
    by_source: dict[str, tuple[dict[str, Any], list[ImageWrite]]] = {}
    for write in writes:
        chosen = select_source(app, write.image)
        if chosen is None:
            continue
        pointer, source = chosen
        by_source.setdefault(pointer, (source, []))[1].append(write)
    ops: list[dict[str, Any]] = []
    for pointer, (source, group) in by_source.items():
        helm_group = [w for w in group if not is_kustomize(source, w.image)]
        kust_group = [w for w in group if is_kustomize(source, w.image)]
        if helm_group:
            ops += _list_op(
                pointer, source, "helm", "parameters", partial(helm_parameters, writes=helm_group)
            )
        if kust_group:
            ops += _list_op(
                pointer, source, "kustomize", "images", partial(kustomize_images, writes=kust_group)
            )
    if not ops:
        return []
    version = (app.get("metadata") or {}).get("resourceVersion")
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}] if version else []
    return guard + ops


def kustomize_current(entries: Sequence[Any], image: TrackedImage) -> Current | None:
    """The tag/digest a Kustomize image list (`[name=]repo:tag@digest`) gives this image, if any."""
    name = image.kustomize_name or image.written_image
    for entry in entries:
        ref = split_image(str(entry))
        if (ref.alias or ref.repository) == name:
            inner = split_image(str(entry).split("=", 1)[1] if ref.alias else str(entry), with_alias=False)
            return Current(tag=inner.tag, digest=inner.digest)
    return None


def carried_value(app: Mapping[str, Any], image: TrackedImage) -> Current | None:
    """What the Application's spec carries for this image (its Helm parameters or Kustomize images): the
    value the `argocd` write-back sets, and a person or another tool may set instead."""
    chosen = select_source(app, image)
    if chosen is None:
        return None
    _, source = chosen
    if is_kustomize(source, image):
        return kustomize_current((source.get("kustomize") or {}).get("images") or [], image)
    params = {p.get("name"): p.get("value") for p in ((source.get("helm") or {}).get("parameters") or [])}
    if image.helm_spec and params.get(image.helm_spec):
        ref = split_image(str(params[image.helm_spec]), with_alias=False)
        return Current(tag=ref.tag, digest=ref.digest)
    if params.get(image.helm_tag or DEFAULT_HELM_TAG):
        return split_tag_value(str(params[image.helm_tag or DEFAULT_HELM_TAG]))
    return None


@dataclass(frozen=True)
class Deployed:
    """What an Application deploys for one image, and by whose hand when it is not its spec's value."""

    value: Current | None
    by: str | None = None  # "an Argo CD rollback by <user>"


def rollback_operation(app: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Application's newest operation when it is an Argo CD rollback (`argocd app rollback`, the UI's
    History and Rollback): a sync carrying the history entry's own source(s), which no other operation
    does. A newer operation of any other kind (a sync to the spec again) ends the rollback."""
    state = (app.get("status") or {}).get("operationState") or {}
    newest = app.get("operation") or state.get("operation")
    sync = (newest or {}).get("sync") if isinstance(newest, Mapping) else None
    if isinstance(sync, Mapping) and (sync.get("source") or sync.get("sources")):
        return newest
    return None


def deployed_value(app: Mapping[str, Any], image: TrackedImage) -> Deployed:
    """What the Application deploys for this image: its spec's value (`carried_value`), or after an Argo CD
    rollback the value of the history entry it went back to, which the spec no longer shows."""
    operation = rollback_operation(app)
    if operation is None:
        return Deployed(carried_value(app, image))
    sync = operation["sync"]
    entry = {"spec": {"source": sync.get("source"), "sources": sync.get("sources")}}
    user = (operation.get("initiatedBy") or {}).get("username") or "someone"
    return Deployed(carried_value(entry, image), by=f"an Argo CD rollback by {user}")


def current_values(app: Mapping[str, Any], image: TrackedImage, aliases: Mapping[str, str]) -> list[Current]:
    """What the Application carries for this image (`carried_value`) and what it runs
    (`status.summary.images`)."""
    carried = carried_value(app, image)
    found: list[Current] = [carried] if carried is not None else []
    for running in ((app.get("status") or {}).get("summary") or {}).get("images") or []:
        ref = split_image(str(running), with_alias=False)
        if canonical_repository(ref.repository, aliases) == image.image and (ref.tag or ref.digest):
            found.append(Current(tag=ref.tag, digest=ref.digest))
    return found

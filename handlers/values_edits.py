"""Image Updater's `git` write-back as pure text edits: the target file a write-back goes to (APL's
`helmvalues:/env/teams/<t>/workloadValues/<n>.managed.yaml`, a kustomization, or the classic
`.argocd-source-<app>.yaml`), refusing paths that leave the repository, and the new file content.
YAML is read with `safe_load` under a size cap and without aliases (no YAML bombs)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from handlers.app_edits import (
    DEFAULT_HELM_NAME,
    DEFAULT_HELM_TAG,
    ImageWrite,
    helm_parameters,
    kustomize_current,
    kustomize_images,
)
from handlers.catalog_parse import TrackedImage, WriteBack
from handlers.image_refs import split_image
from handlers.image_strategies import Current, split_tag_value

MAX_YAML_BYTES = 1024 * 1024
TargetKind = Literal["helmvalues", "kustomization", "source-override"]


class UnsafeTarget(ValueError):
    """The configured write-back target cannot be written safely (traversal, bomb, wrong shape)."""


@dataclass(frozen=True)
class GitTarget:
    kind: TargetKind
    path: str  # relative to the repository root, normalised
    source_kind: Literal["helm", "kustomize"]


def _inside(path: str) -> str:
    if "\x00" in path or "\\" in path:
        raise UnsafeTarget(f"write-back target {path!r} has forbidden characters")
    normal = posixpath.normpath(path.lstrip("/")) if path.strip("/") else "."
    parts = normal.split("/")
    if normal.startswith("..") or ".." in parts or normal in (".", ""):
        raise UnsafeTarget(f"write-back target {path!r} leaves the repository")
    if parts[0] == ".git":
        raise UnsafeTarget(f"write-back target {path!r} points into .git")
    return normal


def resolve_target(write_back: WriteBack, app_name: str, source_path: str, kustomize: bool) -> GitTarget:
    """Where a git write-back goes. `/x` is repo-rooted, `x` is relative to the source path."""
    source_path = source_path or ""
    spec = write_back.target or ""
    kind_text, _, where = spec.partition(":")

    def place(default_name: str) -> str:
        if not where:
            return posixpath.join(source_path, default_name)
        if where.startswith("/"):
            return where
        return posixpath.join(source_path, where)

    if kind_text == "helmvalues":
        return GitTarget("helmvalues", _inside(place("values.yaml")), "helm")
    if kind_text == "kustomization":
        base = place("")
        path = base if base.endswith((".yaml", ".yml")) else posixpath.join(base, "kustomization.yaml")
        return GitTarget("kustomization", _inside(path), "kustomize")
    if spec and kind_text not in ("", "default"):
        raise UnsafeTarget(f"unknown write-back target {spec!r}")
    name = f".argocd-source-{app_name}.yaml"
    return GitTarget(
        "source-override", _inside(posixpath.join(source_path, name)), "kustomize" if kustomize else "helm"
    )


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise UnsafeTarget("YAML aliases are not accepted in write-back targets")
        return super().compose_node(parent, index)


def load_yaml(text: str | None) -> dict[str, Any]:
    """A mapping from YAML text ({} for an empty or missing file); refuses big files and aliases."""
    if not text or not text.strip():
        return {}
    if len(text.encode()) > MAX_YAML_BYTES:
        raise UnsafeTarget(f"write-back target larger than {MAX_YAML_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        raise UnsafeTarget(f"write-back target is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UnsafeTarget("write-back target is not a YAML mapping")
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True)


def _get_path(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _helm_pairs(write: ImageWrite) -> dict[str, str]:
    image = write.image
    if image.helm_spec:
        return {image.helm_spec: write.full}
    return {
        image.helm_name or DEFAULT_HELM_NAME: image.written_image,
        image.helm_tag or DEFAULT_HELM_TAG: write.value,
    }


def edit_file(target: GitTarget, text: str | None, writes: Sequence[ImageWrite]) -> str | None:
    """The new file content, or None when it already says all of this."""
    data = load_yaml(text)
    if target.kind == "helmvalues":
        for write in writes:
            for dotted, value in _helm_pairs(write).items():
                _set_path(data, dotted, value)
    elif target.kind == "kustomization":
        images = [dict(i) for i in data.get("images") or [] if isinstance(i, Mapping)]
        for write in writes:
            name = write.image.kustomize_name or write.image.written_image
            entry: dict[str, Any] = {"name": name}
            if name != write.image.written_image:
                entry["newName"] = write.image.written_image
            entry["newTag"] = write.tag
            if write.digest:
                entry["digest"] = write.digest
            images = [i for i in images if i.get("name") != name] + [entry]
        data["images"] = images
    elif target.source_kind == "kustomize":
        section = dict(data.get("kustomize") or {})
        section["images"] = kustomize_images(list(section.get("images") or []), writes)
        data["kustomize"] = section
    else:
        section = dict(data.get("helm") or {})
        section["parameters"] = helm_parameters(list(section.get("parameters") or []), writes)
        data["helm"] = section
    new_text = dump_yaml(data)
    if text is not None and load_yaml(text) == data:
        return None
    return new_text


def current_in_file(target: GitTarget, text: str | None, image: TrackedImage) -> Current:
    """The value the target file carries now for this image (for no-downgrade and idempotency)."""
    data = load_yaml(text)
    if target.kind == "helmvalues":
        if image.helm_spec:
            ref = split_image(str(_get_path(data, image.helm_spec) or ""), with_alias=False)
            return Current(tag=ref.tag, digest=ref.digest)
        value = _get_path(data, image.helm_tag or DEFAULT_HELM_TAG)
        return split_tag_value(str(value)) if value is not None else Current()
    if target.kind == "kustomization":
        name = image.kustomize_name or image.written_image
        for entry in data.get("images") or []:
            if isinstance(entry, Mapping) and entry.get("name") == name:
                return Current(tag=entry.get("newTag"), digest=entry.get("digest"))
        return Current()
    if target.source_kind == "kustomize":
        return kustomize_current((data.get("kustomize") or {}).get("images") or [], image) or Current()
    for param in (data.get("helm") or {}).get("parameters") or []:
        if isinstance(param, Mapping) and param.get("name") == (image.helm_tag or DEFAULT_HELM_TAG):
            return split_tag_value(str(param.get("value")))
    return Current()

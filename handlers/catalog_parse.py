"""Reading tracked images out of Argo CD objects, exactly as Otomi and APL write them: Image Updater
annotations on an Application (v0.x), and `ImageUpdater` custom resources (v1.x). The result is compact,
frozen data: only what matching and planning need, so 10,000 Applications stay cheap to hold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from handlers.git_urls import normalize_repo_url
from handlers.image_refs import canonical_repository, split_image
from handlers.image_strategies import Strategy, normalize_strategy
from handlers.label_selector import EVERYTHING, LabelSelector, parse_label_selector
from handlers.models import team_id

IU = "argocd-image-updater.argoproj.io"
IMAGE_LIST = f"{IU}/image-list"
WRITE_BACK_METHOD = f"{IU}/write-back-method"
GIT_BRANCH = f"{IU}/git-branch"
GIT_REPOSITORY = f"{IU}/git-repository"
WRITE_BACK_TARGET = f"{IU}/write-back-target"
GENERATE_PATHS = "argocd.argoproj.io/manifest-generate-paths"

WriteMethod = Literal["argocd", "git"]


@dataclass(frozen=True, slots=True)
class WriteBack:
    """Where an update is written: the live Application (`argocd`) or a git repo (`git`)."""

    method: WriteMethod = "argocd"
    secret: str | None = None  # "<ns>/<name>" from `git:secret:<ns>/<name>`
    branch: str | None = None  # branch to push to (Image Updater's `base:target` -> target)
    base_branch: str | None = None
    repository: str | None = None  # overrides the Application's source repoURL
    target: str | None = (
        None  # "helmvalues:<path>", "kustomization:<path>", or None (.argocd-source-<app>.yaml)
    )


@dataclass(frozen=True, slots=True)
class TrackedImage:
    alias: str
    image: str  # canonical repository key (see image_refs.canonical_repository)
    written_image: str  # the repository as configured (written into image-name parameters)
    strategy: Strategy
    constraint: str | None  # semver constraint
    fixed_tag: str | None  # digest strategy: the moving tag followed
    allow_tags: str | None
    ignore_tags: tuple[str, ...]
    helm_name: str | None
    helm_tag: str | None
    helm_spec: str | None
    kustomize_name: str | None
    write_back: WriteBack
    origin: str  # "annotations" or "imageupdater/<name>"
    problem: str | None = None  # configuration we could not honour (unknown strategy, ...)


@dataclass(frozen=True, slots=True)
class AppSource:
    repo_key: str
    repo_url: str
    target_revision: str
    path: str
    chart: str
    ref: str


@dataclass(frozen=True, slots=True)
class AppEntry:
    name: str
    namespace: str
    project: str
    team: str | None
    sources: tuple[AppSource, ...]
    auto_sync: bool
    generate_paths: str | None
    labels: tuple[tuple[str, str], ...] = ()
    annotation_images: tuple[TrackedImage, ...] = field(default=())


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def parse_method(text: str | None, base: WriteBack | None = None) -> WriteBack:
    """`argocd`, `git`, `git:repocreds`, `git:secret:<ns>/<name>`."""
    base = base or WriteBack()
    if not text:
        return base
    text = text.strip()
    if text.startswith("git"):
        secret = text[len("git:secret:") :] if text.startswith("git:secret:") else None
        return replace(base, method="git", secret=secret)
    return replace(base, method="argocd", secret=None)


def parse_branch(text: str | None, base: WriteBack) -> WriteBack:
    if not text:
        return base
    checkout, _, push = text.partition(":")
    return replace(base, base_branch=checkout or None, branch=(push or checkout) or None)


def _image(
    alias: str,
    image_text: str,
    settings: Mapping[str, Any],
    *,
    write_back: WriteBack,
    origin: str,
    aliases: Mapping[str, str],
    helm: tuple[str | None, str | None, str | None],
    kustomize_name: str | None,
) -> TrackedImage:
    ref = split_image(image_text, with_alias=False)
    strategy = normalize_strategy(settings.get("strategy"))
    problem = None if strategy else f"unknown update strategy {settings.get('strategy')!r}"
    strategy = strategy or "semver"
    suffix = ref.tag.strip() if ref.tag else None
    ignore = settings.get("ignore") or ()
    return TrackedImage(
        alias=alias,
        image=canonical_repository(ref.repository, aliases),
        written_image=ref.repository,
        strategy=strategy,
        constraint=suffix if strategy == "semver" else None,
        fixed_tag=suffix if strategy == "digest" else None,
        allow_tags=settings.get("allow"),
        ignore_tags=tuple(ignore),
        helm_name=helm[0],
        helm_tag=helm[1],
        helm_spec=helm[2],
        kustomize_name=kustomize_name,
        write_back=write_back,
        origin=origin,
        problem=problem,
    )


def annotation_images(annotations: Mapping[str, str], aliases: Mapping[str, str]) -> tuple[TrackedImage, ...]:
    """Image Updater v0.x annotations (`image-list`, `<alias>.update-strategy`, `<alias>.helm.image-name`,
    ..., `write-back-method`, `git-branch`, `write-back-target`, `git-repository`)."""
    listing = annotations.get(IMAGE_LIST)
    if not listing:
        return ()
    write_back = parse_method(annotations.get(WRITE_BACK_METHOD))
    write_back = parse_branch(annotations.get(GIT_BRANCH), write_back)
    write_back = replace(
        write_back, repository=annotations.get(GIT_REPOSITORY), target=annotations.get(WRITE_BACK_TARGET)
    )
    images: list[TrackedImage] = []
    for entry in _csv(listing):
        ref = split_image(entry)
        alias = ref.alias or ref.repository.rsplit("/", 1)[-1]
        body = entry.split("=", 1)[1] if ref.alias else entry

        def get(key: str, alias: str = alias) -> str | None:
            value = annotations.get(f"{IU}/{alias}.{key}")
            return value.strip() if isinstance(value, str) else None

        settings = {
            "strategy": get("update-strategy"),
            "allow": get("allow-tags"),
            "ignore": _csv(get("ignore-tags")),
        }
        images.append(
            _image(
                alias,
                body,
                settings,
                write_back=write_back,
                origin="annotations",
                aliases=aliases,
                helm=(get("helm.image-name"), get("helm.image-tag"), get("helm.image-spec")),
                kustomize_name=get("kustomize.image-name"),
            )
        )
    return tuple(images)


def parse_application(obj: Mapping[str, Any], aliases: Mapping[str, str]) -> AppEntry | None:
    meta = obj.get("metadata") or {}
    name = _str(meta.get("name"))
    if not name:
        return None
    spec = obj.get("spec") or {}
    raw_sources = spec.get("sources") or ([spec["source"]] if spec.get("source") else [])
    sources = tuple(
        AppSource(
            repo_key=normalize_repo_url(_str(src.get("repoURL"))),
            repo_url=_str(src.get("repoURL")),
            target_revision=_str(src.get("targetRevision")),
            path=_str(src.get("path")),
            chart=_str(src.get("chart")),
            ref=_str(src.get("ref")),
        )
        for src in raw_sources
        if isinstance(src, Mapping) and src.get("repoURL")
    )
    automated = (spec.get("syncPolicy") or {}).get("automated")
    auto_sync = isinstance(automated, Mapping) and automated.get("enabled", True) is not False
    annotations = meta.get("annotations") or {}
    project = _str(spec.get("project"))
    destination_ns = _str((spec.get("destination") or {}).get("namespace"))
    labels = meta.get("labels") or {}
    return AppEntry(
        name=name,
        namespace=_str(meta.get("namespace")),
        project=project,
        team=team_id(project) or team_id(destination_ns),
        sources=sources,
        auto_sync=auto_sync,
        generate_paths=annotations.get(GENERATE_PATHS),
        labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
        annotation_images=annotation_images(annotations, aliases),
    )


# --- ImageUpdater custom resources -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpdaterRef:
    """One `applicationRefs[]` entry, its images already resolved against the CR-level defaults."""

    name_pattern: str
    selector: LabelSelector
    images: tuple[TrackedImage, ...]

    @property
    def exact(self) -> bool:
        return not any(ch in self.name_pattern for ch in "*?[")


@dataclass(frozen=True, slots=True)
class UpdaterEntry:
    name: str
    target_namespace: str
    refs: tuple[UpdaterRef, ...]


def _merge_settings(*levels: Mapping[str, Any] | None) -> dict[str, Any]:
    """`commonUpdateSettings` from the CR, the ref and the image: the most specific level wins per field."""
    merged: dict[str, Any] = {}
    for level in levels:
        if not isinstance(level, Mapping):
            continue
        if level.get("updateStrategy"):
            merged["strategy"] = level["updateStrategy"]
        if level.get("allowTags"):
            merged["allow"] = level["allowTags"]
        if isinstance(level.get("ignoreTags"), Sequence):
            merged["ignore"] = tuple(str(t) for t in level["ignoreTags"])
    return merged


def _merge_write_back(*levels: Mapping[str, Any] | None) -> WriteBack:
    write_back = WriteBack()
    for level in levels:
        if not isinstance(level, Mapping):
            continue
        write_back = parse_method(level.get("method"), write_back)
        git = level.get("gitConfig") or {}
        write_back = parse_branch(git.get("branch"), write_back)
        if git.get("repository"):
            write_back = replace(write_back, repository=git["repository"])
        if git.get("writeBackTarget"):
            write_back = replace(write_back, target=git["writeBackTarget"])
    return write_back


def parse_image_updater(obj: Mapping[str, Any], aliases: Mapping[str, str]) -> UpdaterEntry | None:
    meta = obj.get("metadata") or {}
    name = _str(meta.get("name"))
    spec = obj.get("spec") or {}
    if not name:
        return None
    refs: list[UpdaterRef] = []
    for ref in spec.get("applicationRefs") or []:
        if not isinstance(ref, Mapping) or not ref.get("namePattern"):
            continue
        write_back = _merge_write_back(spec.get("writeBackConfig"), ref.get("writeBackConfig"))
        images: list[TrackedImage] = []
        for image in ref.get("images") or []:
            if not isinstance(image, Mapping) or not image.get("imageName"):
                continue
            settings = _merge_settings(
                spec.get("commonUpdateSettings"),
                ref.get("commonUpdateSettings"),
                image.get("commonUpdateSettings"),
            )
            targets = image.get("manifestTargets") or {}
            helm = targets.get("helm") or {}
            kustomize = targets.get("kustomize") or {}
            images.append(
                _image(
                    _str(image.get("alias")) or _str(image["imageName"]).rsplit("/", 1)[-1],
                    _str(image["imageName"]),
                    settings,
                    write_back=write_back,
                    origin=f"imageupdater/{name}",
                    aliases=aliases,
                    helm=(helm.get("name") or None, helm.get("tag") or None, helm.get("spec") or None),
                    kustomize_name=kustomize.get("name") or None,
                )
            )
        try:
            selector = parse_label_selector(ref.get("labelSelectors"))
        except ValueError as exc:
            # Which Applications it meant is unknown: the ref keeps to its name pattern, and each of its
            # images says why it is not updated (a plan records that), rather than going quiet.
            selector = EVERYTHING
            problem = f"{name}'s labelSelectors for {ref['namePattern']!r} are invalid: {exc}"
            images = [replace(image, problem=problem) for image in images]
        refs.append(UpdaterRef(_str(ref["namePattern"]), selector, tuple(images)))
    return UpdaterEntry(
        name=name,
        # Image Updater looks for a CR's Applications in the CR's own namespace; `spec.namespace` was
        # deprecated and ignored, then dropped from the CRD (gone by v1.2.4), and is ignored here too.
        target_namespace=_str(meta.get("namespace")),
        refs=tuple(refs),
    )

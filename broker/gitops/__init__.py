"""The GitOps core's I/O side: the catalog watch, the Kubernetes wrapper, coordination state in Redis,
and the flows that turn a planned event into write-backs, syncs and deployment records.

`GitOps` and `build_gitops` load lazily: executors import `broker.gitops.kube`, and the runner imports
the executors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.gitops.runner import GitOps, build_gitops

__all__ = ["GitOps", "build_gitops"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from broker.gitops import runner

        return getattr(runner, name)
    raise AttributeError(name)

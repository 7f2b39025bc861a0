"""The GitOps core's I/O side: the catalog watch, coordination state in Redis, and the flows that turn a
planned event into write-backs, syncs, follow-ups and deployment records. The worker enters through
`build_gitops(settings, redis)` and `GitOps.process(event)`."""

from broker.gitops.runner import GitOps, build_gitops

__all__ = ["GitOps", "build_gitops"]

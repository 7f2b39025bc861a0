"""What the GitOps flows share: the clients they act through, and the moves every flow makes after a
change (request a sync or refresh, record it on the deployment, tell the team) and the verdict of a
followed sync (rollout status, notices, the `follow` action) that broker/gitops/follow_job.py applies."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from broker.deployments import AppRollout, Deployment, DeploymentStore
from broker.executors.follow import FollowResult, tagged
from broker.executors.git_writeback import GitWriter
from broker.executors.harbor_api import HarborAPI
from broker.executors.sync_k8s import SyncRequest, SyncResult, refresh_k8s, sync_k8s
from broker.executors.sync_rest import ArgoRest
from broker.gitops.state import GitOpsState
from broker.kube import Kube
from broker.settings import Settings
from handlers.catalog import Catalog
from handlers.models import Action
from handlers.notices import Notice


@dataclass
class Engine:
    settings: Settings
    redis: redis.Redis
    kube: Kube
    catalog: Catalog
    state: GitOpsState
    deployments: DeploymentStore
    git: GitWriter
    rest: ArgoRest | None = None
    harbor: HarborAPI | None = None
    sleep: Callable[[float], None] = field(default=time.sleep)

    def now(self) -> datetime:
        return datetime.now(UTC)

    # --- Argo CD ----------------------------------------------------------------------------------

    def get_app(self, app: str) -> dict[str, Any]:
        return self.rest.get(app) if self.rest else self.kube.get_app(app)

    def request(self, req: SyncRequest) -> SyncResult:
        settings = self.settings
        if self.rest:
            if req.mode == "refresh":
                return self.rest.refresh(req)
            return self.rest.sync(req, wait_inflight_s=settings.gitops_sync_wait_inflight_s, sleep=self.sleep)
        if req.mode == "refresh":
            return refresh_k8s(self.kube, req)
        return sync_k8s(
            self.kube,
            req,
            retries=settings.gitops_conflict_retries,
            wait_inflight_s=settings.gitops_sync_wait_inflight_s,
            sleep=self.sleep,
        )

    def own_operation(self, app: str, event_id: str) -> bool:
        """Whether the Application carries a sync this event asked for (pending or run)."""
        live = self.get_app(app)
        state = (live.get("status") or {}).get("operationState") or {}
        return tagged(live.get("operation"), event_id) or tagged(state.get("operation"), event_id)

    # --- deployment records ----------------------------------------------------------------------

    def set_rollout(self, deployment_id: str | None, app: str, **changes: Any) -> Deployment | None:
        if not deployment_id:
            return None

        def change(dep: Deployment) -> None:
            rollout = dep.apps.get(app) or AppRollout(app=app)
            dep.apps[app] = rollout.model_copy(update={**changes, "updated_at": self.now()})

        return self.deployments.update(deployment_id, change)

    def attach_event(self, deployment_id: str, event_id: str) -> None:
        self.deployments.update(deployment_id, lambda dep: dep.fill(event_id=event_id))


def rollout_status(result: FollowResult | None, requested: bool) -> str:
    if result is None:
        return "syncing" if requested else "updating"
    if not result.settled:
        return "unsettled"
    if result.phase in ("Failed", "Error"):
        return "failed"
    return "succeeded" if result.health == "Healthy" else "degraded"


def notice_data(dep: Deployment | None, app: str, **extra: Any) -> dict[str, Any]:
    """What actually deployed, for the team's notification: app, image, commit and message, build,
    pusher, and Argo CD's verdict when known."""
    data: dict[str, Any] = {"app": app} if app else {}
    if dep is not None:
        image = dep.apps[app].image if app in dep.apps and dep.apps[app].image else None
        if image is None and dep.image:
            image = dep.image + (f":{dep.tag}" if dep.tag else "") + (f"@{dep.digest}" if dep.digest else "")
        data.update(
            image=image,
            commit=dep.commit,
            commit_message=dep.commit_message,
            commit_url=dep.commit_url,
            build_link=dep.build.link if dep.build else None,
            build_number=dep.build.number if dep.build else None,
            pusher=dep.pusher,
            deployment_id=dep.id,
        )
    data.update({k: v for k, v in extra.items() if v is not None})
    return {k: v for k, v in data.items() if v is not None}


def follow_notices(
    result: FollowResult, *, team: str | None, app: str, event_id: str, dep: Deployment | None
) -> list[Notice]:
    """sync.succeeded/failed, app.healthy/degraded and the deployment verdict for one followed sync."""
    argocd = {"phase": result.phase, "health": result.health, "message": result.message}
    data = notice_data(
        dep, app, argocd=argocd, revision=result.revision, waiting=list(result.waiting) or None
    )
    dep_id = dep.id if dep else None

    def notice(kind: str, summary: str) -> Notice:
        return Notice(
            kind=kind, team=team, app=app, event_id=event_id, deployment_id=dep_id, summary=summary, data=data
        )

    out: list[Notice] = []
    if not result.settled:
        out.append(notice("deployment.failed", f"{app}: {result.summary()}"))
        return out
    if result.phase == "Succeeded":
        out.append(notice("sync.succeeded", f"{app} synced ({result.revision or 'target revision'})"))
    else:
        out.append(notice("sync.failed", f"{app} sync {result.phase}: {result.message or ''}".strip()))
    if result.health == "Healthy":
        out.append(notice("app.healthy", f"{app} is healthy"))
    elif result.health:
        out.append(notice("app.degraded", f"{app} is {result.health}: {result.message or ''}".strip()))
    if result.succeeded:
        out.append(notice("deployment.succeeded", f"{app} deployed {data.get('image') or ''}".strip()))
    else:
        out.append(notice("deployment.failed", f"{app}: {result.summary()}"))
    return out


def follow_action(app: str, result: FollowResult, *, at: datetime) -> Action:
    return Action(
        kind="follow",
        target=app,
        decision="followed the sync until it settled" if result.settled else "stopped following: timeout",
        result=result.summary(),
        detail={
            "phase": result.phase,
            "health": result.health,
            "message": result.message,
            "revision": result.revision,
            "waiting": list(result.waiting),
            "elapsed_s": round(result.elapsed_s, 3),
        },
        at=at,
    )

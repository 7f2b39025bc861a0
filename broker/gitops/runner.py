"""The entry point the worker calls: `build_gitops(settings, redis)` -> `GitOps` (or None without a
cluster), `GitOps.process(event) -> Outcome`, `GitOps.close()`. Tests build `GitOps` directly with an
explicit ApiClient/Configuration (kmock's URL) and, if they like, an explicit catalog."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from kubernetes import client

from broker import metrics
from broker.deployments import DeploymentStore
from broker.errors import TransientError
from broker.executors.git_writeback import GitWriter
from broker.executors.harbor_api import HarborAPI
from broker.executors.sync_rest import ArgoRest
from broker.gitops.drone_flow import process_drone
from broker.gitops.engine import Engine
from broker.gitops.gitea_flow import process_gitea
from broker.gitops.harbor_flow import process_harbor
from broker.gitops.state import GitOpsState
from broker.gitops.watch import CatalogWatch
from broker.kube import Kube, load_api_client
from broker.pins import PinStore
from broker.settings import Settings
from handlers.catalog import Catalog
from handlers.models import Action, Event, Outcome

log = logging.getLogger(__name__)


def harbor_api(settings: Settings) -> HarborAPI | None:
    if not (settings.harbor_api_url and settings.harbor_api_credentials):
        return None
    return HarborAPI(settings.harbor_api_url, settings.harbor_api_credentials.get_secret_value())


class GitOps:
    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis,
        *,
        api_client: client.ApiClient | None = None,
        configuration: client.Configuration | None = None,
        catalog: Catalog | None = None,
        watch: bool | None = None,
        rest: ArgoRest | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if api_client is None:
            api_client = client.ApiClient(configuration) if configuration else load_api_client(settings)
        if api_client is None:
            raise ValueError("no cluster configured: pass api_client/configuration or use build_gitops()")
        self.settings = settings
        self.api_client = api_client
        self.kube = Kube(api_client, settings.argocd_namespace)
        self.catalog = catalog if catalog is not None else Catalog(settings.registry_aliases)
        if rest is None and settings.argocd_url and settings.argocd_token:
            rest = ArgoRest(
                settings.argocd_url,
                settings.argocd_token.get_secret_value(),
                verify_tls=settings.argocd_verify_tls,
                timeout_s=settings.argocd_timeout_s,
            )
        self.engine = Engine(
            settings=settings,
            redis=redis_client,
            kube=self.kube,
            catalog=self.catalog,
            state=GitOpsState(redis_client),
            deployments=DeploymentStore(redis_client, ttl_s=max(int(settings.retention_days * 86400), 3600)),
            git=GitWriter(
                settings.data_dir / "gitops",
                author=settings.gitops_git_author,
                timeout_s=settings.gitops_git_timeout_s,
            ),
            rest=rest,
            harbor=harbor_api(settings),
            sleep=sleep,
        )
        self.watch: CatalogWatch | None = None
        if watch if watch is not None else catalog is None:
            self.watch = CatalogWatch(
                self.kube,
                self.catalog,
                timeout_s=settings.gitops_watch_timeout_s,
                on_deleted=PinStore(redis_client).forget_app,
            )
            self.watch.start()

    def process(self, event: Event) -> Outcome:
        if self.watch is not None and not self.watch.ready.wait(self.settings.gitops_catalog_wait_s):
            raise TransientError("the catalog of Applications is not loaded yet")
        metrics.set_catalog_size(self.engine.redis, {"applications": len(self.catalog)})  # ops metrics
        if event.source == "harbor":
            return process_harbor(self.engine, event)
        if event.source == "gitea":
            return process_gitea(self.engine, event)
        if event.source == "drone":
            return process_drone(self.engine, event)
        reason = f"{event.source} events are not handled by the GitOps core"
        return Outcome(
            status="ignored",
            reason=reason,
            actions=[Action(kind="plan", target=event.source, decision=reason)],
        )

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
        self.api_client.close()


def build_gitops(settings: Settings, redis_client: redis.Redis) -> GitOps | None:
    """The worker's GitOps engine with a running catalog watch, or None when no cluster is configured
    (no BROKER_KUBECONFIG, not in a cluster, no KUBECONFIG)."""
    api_client = load_api_client(settings)
    if api_client is None:
        log.info("no Kubernetes cluster configured: events are recorded, nothing is deployed")
        return None
    return GitOps(settings, redis_client, api_client=api_client)

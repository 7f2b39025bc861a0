"""Pytest fixtures for the GitOps tests (load with `pytest_plugins = ["tests.gitops_plugin"]`): kmock's
emulator extended for Argo CD on a real port, a kubernetes Configuration pointing at it, and settings
with short windows and timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kmock import Server
from kubernetes import client

from broker.settings import Settings
from tests.argocd_emulator import APPS, UPDATERS, ArgoEmulator


@pytest.fixture
async def emu() -> AsyncIterator[ArgoEmulator]:
    async with ArgoEmulator() as emulator, Server(emulator):
        emulator.resources[APPS].kind = "Application"
        emulator.resources[UPDATERS].kind = "ImageUpdater"
        yield emulator


@pytest.fixture
def kube_config(emu: ArgoEmulator) -> client.Configuration:
    configuration = client.Configuration()
    configuration.host = str(emu.url).rstrip("/")
    return configuration


@pytest.fixture
def gitops_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "gitops_coalesce_window_ms": 0,
            "gitops_sync_follow_timeout_s": 5.0,
            "gitops_sync_poll_s": 0.02,
            "gitops_sync_wait_inflight_s": 0.3,
            "gitops_lock_wait_s": 10.0,
            "gitops_watch_timeout_s": 2,
            "gitops_catalog_wait_s": 5.0,
            "registry_aliases": {},
        }
    )

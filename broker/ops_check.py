"""`broker check`: validate the settings, reach Redis, Kubernetes (the Applications the catalog is built
from) and Argo CD's REST API when configured, and say plainly what is missing. Exit code 1 when something
is broken (with --strict, also when something is merely missing, such as a cluster)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import redis

from broker.ops_format import use_color
from broker.queue import sync_redis
from broker.settings import Settings
from handlers.senders import SENDERS

IU_ANNOTATION = "argocd-image-updater.argoproj.io/"
ESC = "\x1b"
MARKS = {"ok": ("✓", "32"), "warn": ("!", "33"), "fail": ("✗", "31"), "info": ("-", "90")}


@dataclass
class Report:
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # (level, area, text)

    def add(self, level: str, area: str, text: str) -> None:
        self.findings.append((level, area, text))

    def count(self, level: str) -> int:
        return sum(1 for found, _, _ in self.findings if found == level)

    def exit_code(self, *, strict: bool = False) -> int:
        return 1 if self.count("fail") or (strict and self.count("warn")) else 0

    def render(self, *, color: bool = False) -> str:
        lines: list[str] = []
        area = None
        for level, where, text in self.findings:
            if where != area:
                lines.append(("" if area is None else "\n") + where)
                area = where
            mark, code = MARKS[level]
            shown = f"{ESC}[{code}m{mark}{ESC}[0m" if color else mark
            lines.append(f"  {shown} {text}")
        fails, warns = self.count("fail"), self.count("warn")
        verdict = f"{fails} problem{'s' * (fails != 1)}, {warns} warning{'s' * (warns != 1)}"
        lines.append("\n" + verdict + ("" if fails else ": nothing is broken"))
        return "\n".join(lines) + "\n"


def mask_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def check_settings(settings: Settings, report: Report) -> None:
    area = "Settings"
    if settings.redis_url:
        report.add("ok", area, f"BROKER_REDIS_URL = {mask_url(settings.redis_url)}")
    else:
        report.add(
            "warn",
            area,
            f"BROKER_REDIS_URL is not set: `broker run` starts an embedded Redis under {settings.data_dir}; "
            "`broker web` and `broker worker` refuse to start",
        )
    for source, sender in SENDERS.items():
        name = sender.secret_setting.upper()
        if settings.secret_for(source):
            report.add("ok", area, f"BROKER_{name} is set: /hooks/{source} is enabled")
        else:
            report.add("warn", area, f"BROKER_{name} is not set: /hooks/{source} answers 503")
    if settings.admin_token and settings.admin_token.get_secret_value():
        report.add("ok", area, "BROKER_ADMIN_TOKEN is set")
    else:
        report.add("warn", area, "BROKER_ADMIN_TOKEN is not set: the ops API and /ui accept team tokens only")
    if settings.max_attempts < 1:
        report.add("fail", area, f"BROKER_MAX_ATTEMPTS is {settings.max_attempts}; it must be at least 1")
    if settings.kubeconfig and not Path(settings.kubeconfig).expanduser().is_file():
        report.add("fail", area, f"BROKER_KUBECONFIG points at {settings.kubeconfig}, which is not a file")
    token = settings.argocd_token.get_secret_value() if settings.argocd_token else ""
    if settings.argocd_url:
        if urlsplit(settings.argocd_url).scheme not in ("http", "https"):
            report.add("fail", area, f"BROKER_ARGOCD_URL {settings.argocd_url!r} is not an http(s) URL")
        if not token:
            report.add("fail", area, "BROKER_ARGOCD_URL is set but BROKER_ARGOCD_TOKEN is not")
    elif token:
        report.add(
            "warn", area, "BROKER_ARGOCD_TOKEN is set but BROKER_ARGOCD_URL is not: the token is unused"
        )


def check_redis(settings: Settings, report: Report) -> None:
    area = "Redis"
    if not settings.redis_url:
        report.add(
            "info", area, "not checked: no BROKER_REDIS_URL (the embedded Redis starts with `broker run`)"
        )
        return
    from rq import Queue, Worker

    client = sync_redis(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)
    try:
        started = time.perf_counter()
        client.ping()
        latency_ms = (time.perf_counter() - started) * 1000
        version = client.info("server").get("redis_version", "?")
        report.add(
            "ok",
            area,
            f"reachable at {mask_url(settings.redis_url)} (Redis {version}, ping {latency_ms:.1f} ms)",
        )
        queues = [Queue(name, connection=client) for name in settings.queue_names()]
        depths = ", ".join(f"{q.name} {q.count} waiting" for q in queues)
        workers = {w.name for q in queues for w in Worker.all(queue=q)}
        report.add("ok", area, f"queues: {depths}")
        if workers:
            report.add("ok", area, f"{len(workers)} worker{'s' * (len(workers) != 1)} registered")
        else:
            report.add("warn", area, "no worker registered: accepted events wait until `broker worker` runs")
    except redis.RedisError as exc:
        report.add("fail", area, f"cannot reach {mask_url(settings.redis_url)}: {exc}")
    finally:
        client.close()


def check_kubernetes(settings: Settings, report: Report) -> None:
    area = "Kubernetes"
    from broker.kube import Kube, load_api_client

    try:
        api_client = load_api_client(settings)
    except Exception as exc:  # a broken kubeconfig raises anything from yaml to ConfigException
        report.add("fail", area, f"cannot load the Kubernetes configuration: {exc}")
        return
    if api_client is None:
        report.add(
            "warn",
            area,
            "not configured (no BROKER_KUBECONFIG, not in a cluster, no KUBECONFIG): events are recorded "
            "and end `done` with 'no cluster configured'; nothing is deployed",
        )
        return
    namespace = settings.argocd_namespace
    source = settings.kubeconfig or os.environ.get("KUBECONFIG") or "in-cluster service account"
    report.add("ok", area, f"API server {api_client.configuration.host} (from {source})")
    try:
        _list_catalog(Kube(api_client, namespace), namespace, report)
    finally:
        api_client.close()


def _list_catalog(kube: Any, namespace: str, report: Report) -> None:
    from broker.errors import PermanentError, TransientError
    from broker.kube import APPLICATIONS, IMAGE_UPDATERS, NotFound

    area = "Kubernetes"
    try:
        apps, _ = kube.list_objects(APPLICATIONS)
    except NotFound:
        report.add(
            "fail", area, f"no Argo CD Application resource: is Argo CD installed? (namespace {namespace})"
        )
        return
    except (PermanentError, TransientError) as exc:
        report.add("fail", area, f"cannot list Applications in namespace {namespace}: {exc}")
        return
    tracked = sum(
        1
        for app in apps
        if any(k.startswith(IU_ANNOTATION) for k in ((app.get("metadata") or {}).get("annotations") or {}))
    )
    report.add(
        "ok",
        area,
        f"{len(apps)} Application{'s' * (len(apps) != 1)} in namespace {namespace}, "
        f"{tracked} with Image Updater annotations",
    )
    try:
        updaters, _ = kube.list_objects(IMAGE_UPDATERS)
        report.add("ok", area, f"{len(updaters)} ImageUpdater resource{'s' * (len(updaters) != 1)}")
    except NotFound:
        report.add("info", area, "ImageUpdater CRD not installed: only Application annotations are used")
    except (PermanentError, TransientError) as exc:
        report.add("warn", area, f"cannot list ImageUpdaters: {exc}")


async def check_argocd(settings: Settings, report: Report) -> None:
    area = "Argo CD REST"
    if not settings.argocd_url:
        report.add(
            "info", area, "not configured (BROKER_ARGOCD_URL unset): syncs go through the Kubernetes API"
        )
        return
    token = settings.argocd_token.get_secret_value() if settings.argocd_token else ""
    base = settings.argocd_url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=settings.argocd_timeout_s)
    connector = aiohttp.TCPConnector(ssl=settings.argocd_verify_tls)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        try:
            async with session.get(f"{base}/api/version") as resp:
                version = (await resp.json(content_type=None) or {}).get("Version") if resp.ok else None
            async with session.get(
                f"{base}/api/v1/applications",
                params={"fields": "items.metadata.name"},
                headers={"Authorization": f"Bearer {token}"},
            ) as resp:
                body: Any = await resp.json(content_type=None) if resp.ok else await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            report.add("fail", area, f"cannot reach {base}: {exc.__class__.__name__}: {exc}")
            return
    where = f"{base}" + (f" (Argo CD {version})" if version else "")
    if status in (401, 403):
        report.add("fail", area, f"{where} refused the token ({status}): check BROKER_ARGOCD_TOKEN")
    elif status != 200:
        report.add("fail", area, f"{where} answered {status} to listing applications: {str(body)[:200]}")
    else:
        count = len((body or {}).get("items") or [])
        report.add("ok", area, f"{where} accepted the token; {count} application{'s' * (count != 1)} visible")


def run_checks(settings: Settings) -> Report:
    report = Report()
    check_settings(settings, report)
    check_redis(settings, report)
    check_kubernetes(settings, report)
    asyncio.run(check_argocd(settings, report))
    return report


def check_cmd(args: argparse.Namespace, settings: Settings) -> int:
    report = run_checks(settings)
    sys.stdout.write(report.render(color=use_color(sys.stdout)))
    return report.exit_code(strict=args.strict)

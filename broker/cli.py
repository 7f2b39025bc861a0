"""The `broker` command: `run` (web + workers, embedded Redis when no URL is set), `web`, `worker`, and
the ops commands that talk to a running broker over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import subprocess
import sys
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from broker import logs, ops_cli
from broker.settings import Settings

log = logging.getLogger("broker")


def start_web(settings: Settings, host: str | None, port: int | None) -> None:
    from broker.app import create_app

    for source in ("gitea", "drone", "harbor"):
        if settings.secret_for(source) is None:
            log.warning("/hooks/%s is disabled: its secret setting is not set", source)
    if settings.admin_token is None:
        log.warning("BROKER_ADMIN_TOKEN is not set: the ops API and the page accept only team tokens")
    app = create_app(settings)
    settle_heap()
    web.run_app(
        app,
        host=host or settings.host,
        port=port or settings.port,
        access_log=None,
        # aiohttp closes a connection that carries no request for this long, from its opening (a slowloris
        # trickling its headers never gets a request under way) and after each answer (idle keep-alive).
        keepalive_timeout=settings.idle_timeout_s,
        print=lambda text: log.info(text.strip()),
        loop=new_event_loop(),
    )


def settle_heap(young_threshold: int = 50_000) -> None:
    """Tune the cyclic garbage collector for the intake. Each webhook in flight holds a parsed payload (a
    few hundred containers), and the default collector walks every live young container each 700
    allocations: with dozens of webhooks in flight, that was a quarter of the web tier's CPU. Startup's
    objects live as long as the process: freeze them out of every later collection, and run the young
    collection less often (garbage without cycles is freed by reference counting regardless)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the intake spends a tenth less CPU per webhook."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    embedded = None
    if not settings.redis_url:
        from broker.embedded import EmbeddedRedis

        embedded = EmbeddedRedis(settings.data_dir)
        settings = settings.model_copy(update={"redis_url": embedded.url})
    env = {**os.environ, "BROKER_REDIS_URL": settings.redis_url or ""}
    workers = [spawn(["worker"], env) for _ in range(args.workers or settings.workers)]
    try:
        start_web(settings, args.host, args.port)
    finally:
        stop(workers)
        if embedded:
            embedded.close()
    return 0


def need_redis(settings: Settings, command: str) -> None:
    if not settings.redis_url:
        sys.exit(f"broker {command} needs BROKER_REDIS_URL; `broker run` starts an embedded Redis instead")


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    need_redis(settings, "web")
    start_web(settings, args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """By default one process per queue role: a slow notification target (up to its timeout per try)
    then never holds up event processing. The first process answers the health probes for all."""
    from broker.worker import run_worker, wait_for_redis

    need_redis(settings, "worker")
    assert settings.redis_url
    wait_for_redis(settings.redis_url)
    roles = args.queues.split(",")
    if len(roles) == 1 or args.burst:
        run_worker(settings, roles=roles, burst=args.burst, health_port=settings.worker_health_port)
        return 0
    child_env = {**os.environ, "BROKER_WORKER_HEALTH_PORT": "0"}
    helpers = [spawn(["worker", "--queues", role], child_env) for role in roles[1:]]
    try:
        run_worker(
            settings,
            roles=roles[:1],
            health_port=settings.worker_health_port,
            siblings_alive=lambda: all(proc.poll() is None for proc in helpers),
        )
    finally:
        stop(helpers)
    return 0


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "broker.cli", *args], env=env)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="web + worker(s) in one command (embedded Redis without BROKER_REDIS_URL)"
    )
    run.add_argument("--workers", type=int, default=None, help="worker processes (default BROKER_WORKERS=1)")
    web_cmd = sub.add_parser("web", help="the web tier only")
    for cmd in (run, web_cmd):
        cmd.add_argument("--host", default=None)
        cmd.add_argument("--port", type=int, default=None)
    worker = sub.add_parser("worker", help="one worker process")
    worker.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    worker.add_argument(
        "--queues",
        default="events,notify",
        choices=["events,notify", "events", "notify", "notify,events"],
        metavar="ROLES",
        help="events, notify, or events,notify (default): with both, notifications get their own process",
    )
    run.set_defaults(handler=cmd_run)
    web_cmd.set_defaults(handler=cmd_web)
    worker.set_defaults(handler=cmd_worker)
    ops_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"BROKER_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.exit(f"broker: invalid settings: {problems}")
    logs.configure(settings.log_level)
    return int(args.handler(args, settings) or 0)


if __name__ == "__main__":
    sys.exit(main())

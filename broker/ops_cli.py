"""Ops commands of the `broker` CLI that talk to a running broker over its HTTP API:
`broker events [--follow]`, `broker event ID`, `broker replay ID...`, `broker deadletter [--replay-all]`,
`broker pins [--team T]` and `broker unpin APP/ALIAS` (rollback pins, broker/api/pins.py), plus
`broker check` (broker/ops_check.py), which checks the configuration and what it points at.

The URL comes from `--url` (default BROKER_URL, else http://127.0.0.1:8080) and the token from BROKER_TOKEN
(else BROKER_ADMIN_TOKEN); a token is never taken on the command line, where `ps` would show it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any, TextIO
from urllib.parse import quote as url_quote

import aiohttp

from broker.ops_format import (
    clean,
    event_row,
    event_table,
    image_value,
    local_time,
    pin_table,
    show_event,
    use_color,
)
from broker.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8080"
FILTERS = ("source", "type", "team", "repo", "status")
PAGE_MAX = 500
REPLAY_PARALLEL = 4


class CliError(Exception):
    """A failure worth one line on stderr and exit code 1."""


class OpsClient:
    def __init__(self, url: str, token: str | None) -> None:
        if not token:
            raise CliError("no token: set BROKER_TOKEN (or BROKER_ADMIN_TOKEN) to an admin or team token")
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.timeout = aiohttp.ClientTimeout(total=30.0)
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OpsClient:
        self.session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session:
            await self.session.close()

    async def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        assert self.session, "use OpsClient as an async context manager"
        query = _query(params)
        try:
            async with self.session.request(method, self.url + path, params=query) as resp:
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
                if resp.status >= 400:
                    message = body.get("error") if isinstance(body, dict) else None
                    raise HttpError(resp.status, message or resp.reason or "error")
                return body
        except aiohttp.ClientConnectionError as exc:
            raise CliError(f"cannot reach the broker at {self.url}: {exc}") from None
        except TimeoutError:
            raise CliError(f"the broker at {self.url} did not answer in time") from None

    async def changes(self, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The SSE live tail, reconnecting with Last-Event-ID after a dropped connection."""
        assert self.session
        last_id: str | None = None
        query = _query(params)
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                async with self.session.get(
                    self.url + "/api/v1/events/stream",
                    params=query,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
                ) as resp:
                    if resp.status >= 400:
                        raise HttpError(resp.status, (await resp.text())[:200])
                    async for frame_id, data in sse_frames(resp.content):
                        last_id = frame_id or last_id
                        yield json.loads(data)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                print(f"stream interrupted ({exc.__class__.__name__}); reconnecting…", file=sys.stderr)
                await asyncio.sleep(1)


def _query(params: dict[str, Any] | None) -> dict[str, str]:
    """Query parameters as strings, leaving out the unset (None or empty) ones."""
    return {k: str(v) for k, v in (params or {}).items() if v not in (None, "")}


class HttpError(CliError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


async def sse_frames(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, str]]:
    frame_id: str | None = None
    data: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield frame_id, "\n".join(data)
            frame_id, data = None, []
        elif line.startswith("id:"):
            frame_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def client_from(args: argparse.Namespace) -> OpsClient:
    token = os.environ.get("BROKER_TOKEN") or os.environ.get("BROKER_ADMIN_TOKEN")
    return OpsClient(args.url, token)


def filters_from(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name, None) for name in (*FILTERS, "since")}


async def fetch_events(
    client: OpsClient, filters: dict[str, Any], limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` events, newest first, paging with the cursor when `limit` exceeds one page."""
    items: list[dict[str, Any]] = []
    while len(items) < limit:
        page = await client.call(
            "GET",
            "/api/v1/events",
            {**filters, "limit": min(PAGE_MAX, limit - len(items)), "cursor": cursor},
        )
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor or not page["items"]:
            break
    return items, cursor


# --- commands ------------------------------------------------------------------------------------


async def events_cmd(args: argparse.Namespace, out: TextIO) -> int:
    async with client_from(args) as client:
        items, cursor = await fetch_events(client, filters_from(args), args.limit, args.cursor)
        if args.json and not args.follow:
            json.dump({"items": items, "next_cursor": cursor}, out, indent=2)
            out.write("\n")
            return 0
        if not args.follow:
            out.write(event_table(items, color=use_color(out)))
            if cursor and len(items) >= args.limit:
                out.write(f"… more: --cursor {cursor}\n")
            return 0
        # A tail reads oldest to newest, then every change as it happens (one line per status change).
        out.write(event_table(list(reversed(items)), color=use_color(out)))
        out.flush()
        live = {k: v for k, v in filters_from(args).items() if k != "since"}
        async for change in client.changes(live):
            line = json.dumps(change) if args.json else event_row(change, color=use_color(out))
            out.write(line + "\n")
            out.flush()
    return 0


async def event_cmd(args: argparse.Namespace, out: TextIO) -> int:
    async with client_from(args) as client:
        event = await client.call("GET", f"/api/v1/events/{args.id}")
    if args.json:
        json.dump(event, out, indent=2)
        out.write("\n")
    else:
        out.write(show_event(event, payload=args.payload, color=use_color(out)))
    return 0


async def replay_cmd(args: argparse.Namespace, out: TextIO) -> int:
    failures = 0
    async with client_from(args) as client:
        for event_id in args.ids:
            try:
                answer = await client.call("POST", f"/api/v1/events/{event_id}/replay")
                out.write(f"{event_id}: {answer['status']}\n")
            except HttpError as exc:
                failures += 1
                out.write(f"{event_id}: refused ({exc})\n")
    return 1 if failures else 0


async def deadletter_cmd(args: argparse.Namespace, out: TextIO) -> int:
    filters = {"status": "dead", "team": args.team}
    async with client_from(args) as client:
        if not args.replay_all:
            items, _ = await fetch_events(client, filters, args.limit)
            health = await client.call("GET", "/api/v1/ops/health")
            total = health["events"]["by_status"].get("dead", len(items))
            out.write(event_table(items, color=use_color(out)))
            out.write(f"{total} dead event{'s' if total != 1 else ''}")
            out.write(f" (showing {len(items)})\n" if total > len(items) else "\n")
            return 0
        return await replay_all(client, filters, out, progress=sys.stderr)


async def replay_all(client: OpsClient, filters: dict[str, Any], out: TextIO, *, progress: TextIO) -> int:
    """Replay every dead event, a few at a time, walking the dead index by cursor (replayed ids leave it;
    the cursor is an id bound, so none is skipped). Progress goes to `progress`: one updating line on a
    terminal, a line per tenth otherwise."""
    health = await client.call("GET", "/api/v1/ops/health")
    total = int(health["events"]["by_status"].get("dead", 0))
    if total == 0:
        out.write("no dead events\n")
        return 0
    done, refused = 0, []
    report = _progress_printer(progress, total)
    cursor: str | None = None
    while True:
        page = await client.call("GET", "/api/v1/events", {**filters, "limit": 100, "cursor": cursor})
        ids = [item["id"] for item in page["items"]]
        for start in range(0, len(ids), REPLAY_PARALLEL):
            batch = ids[start : start + REPLAY_PARALLEL]
            results = await asyncio.gather(
                *(client.call("POST", f"/api/v1/events/{i}/replay") for i in batch), return_exceptions=True
            )
            for event_id, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    refused.append((event_id, str(result)))
                else:
                    done += 1
            report(done, len(refused))
        cursor = page["next_cursor"]
        if not cursor or not page["items"]:
            break
    report(done, len(refused), final=True)
    out.write(f"replayed {done} of {max(total, done + len(refused))} dead events")
    out.write(f"; {len(refused)} refused\n" if refused else "\n")
    for event_id, why in refused:
        out.write(f"  {event_id}: {why}\n")
    return 1 if refused else 0


def _progress_printer(stream: TextIO, total: int) -> Callable[..., None]:
    tty = stream.isatty()
    step = max(1, total // 10)
    last = [0]

    def report(done: int, refused: int, final: bool = False) -> None:
        count = done + refused
        of = max(total, count)
        text = f"replaying {count}/{of} ({count * 100 // of}%)" + (f", {refused} refused" if refused else "")
        if tty:
            stream.write("\r" + text + ("\n" if final else ""))
        elif final or count - last[0] >= step:
            stream.write(text + "\n")
            last[0] = count
        stream.flush()

    return report


async def pins_cmd(args: argparse.Namespace, out: TextIO) -> int:
    async with client_from(args) as client:
        answer = await client.call("GET", "/api/v1/pins", {"team": args.team})
    if args.json:
        json.dump(answer, out, indent=2)
        out.write("\n")
    else:
        out.write(pin_table(answer["items"]))
    return 0


async def unpin_cmd(args: argparse.Namespace, out: TextIO) -> int:
    app, alias = args.key
    async with client_from(args) as client:
        try:
            answer = await client.call("DELETE", f"/api/v1/pins/{quote(app)}/{quote(alias)}")
        except HttpError as exc:
            if exc.status == 404:
                raise CliError(f"no pin {app}/{alias} ({exc}); `broker pins` lists them") from None
            raise
    pin = answer["unpinned"]
    out.write(
        f"unpinned {clean(pin.get('key'))} (team {clean(pin.get('team') or '-')}): {clean(pin.get('image'))} "
        f"applied {image_value(pin.get('applied'))}, found {image_value(pin.get('found'))}, "
        f"pinned {local_time(pin.get('pinned_at'))}\n"
    )
    return 0


def quote(segment: str) -> str:
    """One path segment of the API's URL (an alias or name with odd characters stays one segment)."""
    return url_quote(segment, safe="")


def pin_key_arg(text: str) -> tuple[str, str]:
    app, _, alias = text.partition("/")
    if not app or not alias or "/" in alias:
        raise argparse.ArgumentTypeError(f"{text!r} is not APP/ALIAS (as `broker pins` lists them)")
    return app, alias


def _runner(command: Callable[[argparse.Namespace, TextIO], Any]) -> Callable[..., int]:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return int(asyncio.run(command(args, sys.stdout)))
        except CliError as exc:
            print(f"broker {args.command}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0

    return handler


def _http(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("BROKER_URL", DEFAULT_URL),
        help="the broker's base URL (default: $BROKER_URL or %(default)s); token from $BROKER_TOKEN",
    )


def register(sub: Any) -> None:
    """Add the ops commands to `broker`'s sub-command parser (called by broker.cli.build_parser)."""
    from broker.ops_check import check_cmd

    events = sub.add_parser("events", help="the event log, newest first; --follow tails it live")
    _http(events)
    for name in FILTERS:
        events.add_argument(f"--{name}", default=None, help=f"only events with this {name}")
    events.add_argument("--since", default=None, help="ISO 8601 time, e.g. 2026-01-31T10:00:00Z")
    events.add_argument("--limit", type=int, default=20, help="how many to show (default %(default)s)")
    events.add_argument("--cursor", default=None, help="continue after this event id (from a previous page)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing changes as they happen")
    events.add_argument("--json", action="store_true", help="JSON instead of a table")
    events.set_defaults(handler=_runner(events_cmd))

    event = sub.add_parser("event", help="one event: what came in, what was decided, what was done")
    _http(event)
    event.add_argument("id")
    event.add_argument("--json", action="store_true", help="the full record as JSON")
    event.add_argument("--payload", action="store_true", help="also print the parsed payload")
    event.set_defaults(handler=_runner(event_cmd))

    replay = sub.add_parser("replay", help="queue events again (after a failure, or to re-apply them)")
    _http(replay)
    replay.add_argument("ids", nargs="+", metavar="ID")
    replay.set_defaults(handler=_runner(replay_cmd))

    dead = sub.add_parser("deadletter", help="dead events (retries used up); --replay-all re-queues them")
    _http(dead)
    dead.add_argument("--team", default=None, help="only this team's dead events (admin token)")
    dead.add_argument("--limit", type=int, default=50, help="how many to list (default %(default)s)")
    dead.add_argument("--replay-all", action="store_true", help="replay every dead event, with progress")
    dead.set_defaults(handler=_runner(deadletter_cmd))

    pins = sub.add_parser("pins", help="rollback pins: images the broker leaves alone until unpinned")
    _http(pins)
    pins.add_argument("--team", default=None, help="only this team's pins (admin token)")
    pins.add_argument("--json", action="store_true", help="JSON instead of a table")
    pins.set_defaults(handler=_runner(pins_cmd))

    unpin = sub.add_parser("unpin", help="remove a rollback pin: later pushes update that image again")
    _http(unpin)
    unpin.add_argument("key", type=pin_key_arg, metavar="APP/ALIAS", help="a pin's key, from `broker pins`")
    unpin.set_defaults(handler=_runner(unpin_cmd))

    check = sub.add_parser(
        "check", help="check settings, Redis, Kubernetes and Argo CD; exit 1 when something is broken"
    )
    check.add_argument("--strict", action="store_true", help="treat warnings (e.g. no cluster) as failures")
    check.set_defaults(handler=check_cmd)

"""`broker pins` and `broker unpin` run as subprocesses against the broker's app on a real port and real
Redis (the way tests/test_ops_cli.py runs the ops commands), plus the pin table on its own."""

from __future__ import annotations

import json

import pytest

from broker.app import create_app
from broker.ops_format import local_time, pin_table
from broker.pins import PinStore
from tests.test_ops_api import team_token
from tests.test_ops_cli import base, broker, rows
from tests.test_pins_api import as_json, pin, seed


@pytest.fixture
async def server(aiohttp_server, settings):
    return await aiohttp_server(create_app(settings))


async def test_pins_lists_every_pin_or_one_teams(server, sync_redis):
    code, out, err = await broker("pins", "--url", base(server))
    assert (code, out) == (0, "no pins\n"), err

    made = seed(sync_redis)
    code, out, err = await broker("pins", "--url", base(server))
    assert code == 0, err
    header = out.splitlines()[0]
    assert header.split("  ")[0] == "KEY" and "APPLIED → FOUND" in header and header.endswith("REASON")
    when = local_time("2026-03-01T09:30:00Z")
    listed = [("team-demo-hello/api", "demo"), ("team-demo-web/web", "demo"), ("team-ops-tool/tool", "ops")]
    assert [line.split()[:6] for line in rows(out)] == [
        [key, team, "1.4.0", "→", "1.3.2", when.split()[0]] for key, team in listed
    ]
    assert all(line.endswith(f"{when}  rolled back from 1.4.0 to 1.3.2") for line in rows(out))

    code, out, _ = await broker("pins", "--url", base(server), "--team", "team-ops")
    assert code == 0 and [line.split()[0] for line in rows(out)] == ["team-ops-tool/tool"]
    code, out, _ = await broker("pins", "--url", base(server), "--json")
    assert code == 0 and json.loads(out) == {"items": [as_json(p) for p in (made[1], made[0], made[2])]}

    team_token(sync_redis)
    code, out, _ = await broker("pins", "--url", base(server), token="demo-token")
    assert code == 0 and [line.split()[0] for line in rows(out)] == [
        "team-demo-hello/api",
        "team-demo-web/web",
    ]
    code, out, err = await broker("pins", "--url", base(server), "--team", "ops", token="demo-token")
    assert (code, out) == (1, "")
    assert err == "broker pins: 403: a team token can only read its own team's pins\n"


async def test_unpin_removes_a_pin_and_fails_clearly_on_404(server, sync_redis):
    made = seed(sync_redis)
    code, out, err = await broker("unpin", "team-ops-tool/tool", "--url", base(server))
    assert code == 0, err
    assert out == (
        "unpinned team-ops-tool/tool (team ops): registry.example.com/demo/hello applied 1.4.0, "
        f"found 1.3.2, pinned {local_time('2026-03-01T09:30:00Z')}\n"
    )
    assert PinStore(sync_redis).get("team-ops-tool", "tool") is None

    code, out, err = await broker("unpin", "team-ops-tool/tool", "--url", base(server))
    assert (code, out) == (1, "")
    assert err == "broker unpin: no pin team-ops-tool/tool (404: no such pin); `broker pins` lists them\n"

    team_token(sync_redis)
    code, _, err = await broker("unpin", "team-demo-web/web", "--url", base(server), token="wrong")
    assert code == 1 and "401: invalid bearer token" in err
    code, _, err = await broker("unpin", "team-demo-web/web", "--url", base(server), token="demo-token")
    assert code == 0, err
    assert PinStore(sync_redis).get("team-demo-web", "web") is None
    assert PinStore(sync_redis).get("team-demo-hello", "api") == made[1]


async def test_a_team_token_cannot_unpin_another_teams_pin(server, sync_redis):
    made = seed(sync_redis)
    team_token(sync_redis)
    code, out, err = await broker("unpin", "team-ops-tool/tool", "--url", base(server), token="demo-token")
    assert (code, out) == (1, "") and "404: no such pin" in err
    assert PinStore(sync_redis).get("team-ops-tool", "tool") == made[2]


async def test_unpin_wants_app_slash_alias():
    code, out, err = await broker("unpin", "team-demo-web", "--url", "http://127.0.0.1:1")
    assert (code, out) == (2, "")
    assert "'team-demo-web' is not APP/ALIAS" in err


def test_pin_table_shortens_digests_and_strips_terminal_escapes():
    digest = "sha256:" + "ab" * 32
    odd = pin("team-demo-web", "web", "demo").model_copy(
        update={"applied": f"1.4.0@{digest}", "found": digest, "reason": "changed\x1b[31m outside"}
    )
    table = pin_table([as_json(odd)])
    [row] = table.splitlines()[1:]
    assert "1.4.0@sha256:abababababab… → sha256:abababababab…" in row
    assert "\x1b" not in table and row.endswith("changed [31m outside")
    assert pin_table([]) == "no pins\n"

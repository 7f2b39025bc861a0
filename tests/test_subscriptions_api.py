"""The subscriptions API over real HTTP: create/list/get/patch/delete, validation 400s, secrets masked in
every answer, signing secrets shown once and rotated, team isolation on every endpoint, SSRF refusals at
creation, and a dead delivery listed and replayed to a real local receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from rq import Queue

from broker import keys
from broker.api import subscriptions, teams
from broker.api.errors import error_middleware
from broker.notify.fanout import emit
from handlers.notices import Notice
from tests.conftest import ADMIN_TOKEN
from tests.notify_support import (
    Reply,
    notify_settings,
    receiver_fixture,  # noqa: F401 (fixtures, registered by name)
    work_until,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BASE = "/api/v1/subscriptions"


@pytest.fixture
def nsettings(settings):
    return notify_settings(settings, notify_retry_schedule=[0.1])


@pytest.fixture
async def api(aiohttp_client, nsettings, async_redis, sync_redis):
    app = web.Application(middlewares=[error_middleware])
    app[keys.SETTINGS] = nsettings
    app[keys.REDIS] = async_redis
    app[keys.QUEUE] = Queue(nsettings.queue_name, connection=sync_redis)
    app.add_routes(teams.routes)
    app.add_routes(subscriptions.routes)
    return await aiohttp_client(app)


async def token_for(api, team: str) -> dict[str, str]:
    resp = await api.post(f"/api/v1/teams/{team}/tokens", headers=ADMIN)
    return {"Authorization": f"Bearer {(await resp.json())['token']}"}


async def create(api, headers: dict[str, str], expect: int = 201, **body: Any) -> dict[str, Any]:
    resp = await api.post(BASE, json=body, headers=headers)
    data = await resp.json()
    assert resp.status == expect, data
    return data


def notice(app: str = "shop", summary: str = "shop 1.2.3 is live", team: str = "demo") -> Notice:
    return Notice(kind="deployment.succeeded", team=team, app=app, summary=summary)


async def test_create_get_list_patch_delete(api, receiver):
    demo = await token_for(api, "demo")
    created = await create(api, demo, target=receiver.url(), name="ops room", kinds=["deployment.failed"],
                           apps=["shop-*", "billing"])  # fmt: skip
    assert created["team"] == "demo" and created["enabled"] is True
    assert created["kinds"] == ["deployment.failed"] and created["apps"] == ["billing", "shop-*"]
    assert created["target"]["type"] == "webhook" and created["secret"].startswith("whsec_")
    assert created["signing"]["live_secrets"] == 1
    sub_id = created["id"]

    fetched = await (await api.get(f"{BASE}/{sub_id}", headers=demo)).json()
    assert "secret" not in fetched and created["secret"] not in str(fetched)  # shown once
    assert fetched["health"]["consecutive_dead"] == 0
    listed = await (await api.get(BASE, headers=demo)).json()
    assert [s["id"] for s in listed["items"]] == [sub_id]

    resp = await api.patch(
        f"{BASE}/{sub_id}", json={"kinds": ["*"], "template": "$app: $summary"}, headers=demo
    )
    patched = await resp.json()
    assert resp.status == 200 and patched["kinds"] == ["*"] and patched["template"] == "$app: $summary"
    resp = await api.patch(f"{BASE}/{sub_id}", json={"template": None, "enabled": False}, headers=demo)
    patched = await resp.json()
    assert patched["template"] is None and patched["enabled"] is False and patched["name"] == "ops room"

    assert (await api.delete(f"{BASE}/{sub_id}", headers=demo)).status == 204
    assert (await api.get(f"{BASE}/{sub_id}", headers=demo)).status == 404
    assert (await (await api.get(BASE, headers=demo)).json())["items"] == []


async def test_admin_names_the_team(api, receiver):
    await create(api, ADMIN, expect=400, target=receiver.url())
    created = await create(api, ADMIN, target=receiver.url(), team="team-other")
    assert created["team"] == "other"
    demo = await token_for(api, "demo")
    assert (
        await api.post(BASE, json={"target": receiver.url(), "team": "other"}, headers=demo)
    ).status == 403
    mine = await create(api, demo, target=receiver.url(), team="team-demo")
    assert mine["team"] == "demo"
    everything = await (await api.get(BASE, headers=ADMIN)).json()
    assert {s["team"] for s in everything["items"]} == {"demo", "other"}
    only_other = await (await api.get(f"{BASE}?team=team-other", headers=ADMIN)).json()
    assert [s["id"] for s in only_other["items"]] == [created["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kinds": ["deployment.succeeded"]}, "target"),
        ({"target": "http://127.0.0.1:9/x", "kinds": ["deployment.exploded"]}, "kinds"),
        ({"target": "http://127.0.0.1:9/x", "kinds": []}, "kinds"),
        ({"target": "http://127.0.0.1:9/x", "apps": ["shop;rm -rf"]}, "apps"),
        ({"target": "http://127.0.0.1:9/x", "template": "cost: $"}, "template"),
        ({"target": "http://127.0.0.1:9/x", "name": "x" * 201}, "name"),
        ({"target": "http://127.0.0.1:9/x", "enabled": "sometimes"}, "enabled"),
        ({"target": "http://127.0.0.1:9/x", "colour": "red"}, "colour"),
        ({"target": {"type": "pager", "url": "http://127.0.0.1:9/x"}}, "target.type"),
    ],
)
async def test_validation_errors_are_400_with_the_field(api, body, field):
    resp = await api.post(BASE, json=body, headers=ADMIN | {})
    data = await resp.json()
    assert resp.status == 400 and data["error"] == "invalid subscription"
    assert any(d["field"].startswith(field) for d in data["detail"]), data


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("ftp://example.com/x", "apprise"),
        ("http://127.0.0.2:9/x", "loopback"),  # the allow-list names 127.0.0.1 only
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("json://10.0.0.7/hook", "private"),
        ("syslog://", "broker host"),
    ],
)
async def test_bad_or_refused_targets_are_400(api, target, why):
    resp = await api.post(BASE, json={"target": target, "team": "demo"}, headers=ADMIN)
    data = await resp.json()
    assert resp.status == 400 and data["error"] == "invalid target" and why in data["detail"]


async def test_non_json_body_and_missing_auth(api):
    assert (await api.post(BASE, data=b"not json", headers=ADMIN)).status == 400
    assert (await api.get(BASE)).status == 401
    assert (await api.get(BASE, headers={"Authorization": "Bearer nope"})).status == 401


SECRETS = [
    "hunter2pass",
    "sekr3t-query-token",
    "T0123456789ABCDEFXYZ",
    "TIiajkdnlazkcOXrIdevi7FQ",
    "A1BRTD4JD",
    "k3y-in-header",
]


async def test_target_secrets_are_masked_in_every_answer(api, receiver):
    demo = await token_for(api, "demo")
    webhook = (
        f"http://ci:hunter2pass@127.0.0.1:{receiver.port}/hooks/T0123456789ABCDEFXYZ?token=sekr3t-query-token"
    )
    slack = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
    chat = f"json://127.0.0.1:{receiver.port}/chat?+X-Api-Key=k3y-in-header&method=POST"
    answers = []
    ids = []
    for target in (webhook, slack, chat):
        resp = await api.post(BASE, json={"target": target}, headers=demo)
        assert resp.status == 201
        answers.append(await resp.text())
        ids.append((await resp.json())["id"])
    answers.append(await (await api.get(BASE, headers=demo)).text())
    for sub_id in ids:
        answers.append(await (await api.get(f"{BASE}/{sub_id}", headers=demo)).text())
        answers.append(await (await api.patch(f"{BASE}/{sub_id}", json={"name": "n"}, headers=demo)).text())
    answers.append(await (await api.post(f"{BASE}/{ids[0]}/rotate-secret", headers=demo)).text())
    for text in answers:
        for secret in SECRETS:
            assert secret not in text
    shown = await (await api.get(f"{BASE}/{ids[0]}", headers=demo)).json()
    assert shown["target"]["url"].startswith(f"http://ci:****@127.0.0.1:{receiver.port}/hooks/")
    assert "token=****" in shown["target"]["url"]
    slack_view = await (await api.get(f"{BASE}/{ids[1]}", headers=demo)).json()
    assert slack_view["target"]["service"] == "Slack" and slack_view["target"]["url"].endswith("#general")
    chat_view = await (await api.get(f"{BASE}/{ids[2]}", headers=demo)).json()
    assert "method=POST" in chat_view["target"]["url"] and "+X-Api-Key=****" in chat_view["target"]["url"]


async def test_rotate_secret(api, receiver):
    demo = await token_for(api, "demo")
    created = await create(api, demo, target=receiver.url())
    resp = await api.post(f"{BASE}/{created['id']}/rotate-secret", headers=demo)
    rotated = await resp.json()
    assert (
        resp.status == 200
        and rotated["secret"].startswith("whsec_")
        and rotated["secret"] != created["secret"]
    )
    assert (
        rotated["signing"]["live_secrets"] == 2 and len(rotated["signing"]["previous_secrets_expire_at"]) == 1
    )
    chat = await create(api, demo, target=receiver.url().replace("http://", "json://"))
    assert (await api.post(f"{BASE}/{chat['id']}/rotate-secret", headers=demo)).status == 409


async def test_patch_target_is_checked_and_a_webhook_gets_a_secret(api, receiver):
    demo = await token_for(api, "demo")
    chat = await create(api, demo, target=receiver.url().replace("http://", "json://"))
    assert "secret" not in chat and "signing" not in chat
    resp = await api.patch(f"{BASE}/{chat['id']}", json={"target": "http://10.1.1.1/x"}, headers=demo)
    assert resp.status == 400 and "private" in (await resp.json())["detail"]
    resp = await api.patch(f"{BASE}/{chat['id']}", json={"target": receiver.url()}, headers=demo)
    became = await resp.json()
    assert (
        resp.status == 200 and became["target"]["type"] == "webhook" and became["secret"].startswith("whsec_")
    )
    for bad in ({"kinds": ["nope"]}, {"enabled": None}, {"apps": []}, {"target": None}):
        assert (await api.patch(f"{BASE}/{chat['id']}", json=bad, headers=demo)).status == 400


async def test_team_isolation_on_every_endpoint(api, receiver, sync_redis, nsettings):
    demo = await token_for(api, "demo")
    other = await token_for(api, "other")
    mine = await create(api, demo, target=receiver.url())
    theirs = await create(api, other, target=receiver.url("/other"))
    emit(sync_redis, nsettings, [notice(team="demo")])
    listed = await (await api.get(f"{BASE}/{mine['id']}/deliveries", headers=demo)).json()
    delivery_id = listed["items"][0]["id"]

    sub = f"{BASE}/{mine['id']}"
    probes = [
        ("GET", sub, None),
        ("PATCH", sub, {"enabled": False}),
        ("POST", f"{sub}/rotate-secret", None),
        ("GET", f"{sub}/deliveries", None),
        ("GET", f"{sub}/deliveries/{delivery_id}", None),
        ("POST", f"{sub}/deliveries/{delivery_id}/replay", None),
        ("DELETE", sub, None),
    ]
    for method, path, body in probes:
        resp = await api.request(method, path, json=body, headers=other)
        assert resp.status == 404, (method, path)
        assert mine["id"] not in await resp.text()
    # A delivery of another subscription is not reachable through one's own subscription either.
    assert (await api.get(f"{BASE}/{theirs['id']}/deliveries/{delivery_id}", headers=other)).status == 404
    listed_other = await (await api.get(BASE, headers=other)).json()
    assert [s["id"] for s in listed_other["items"]] == [theirs["id"]]
    assert (await api.get(f"{BASE}?team=demo", headers=other)).status == 403
    still = await (await api.get(sub, headers=demo)).json()
    assert still["enabled"] is True  # the PATCH from the other team changed nothing
    assert (await api.get(sub, headers=ADMIN)).status == 200  # the admin sees every team


async def test_dead_delivery_is_listed_and_replayed(api, receiver, sync_redis, nsettings):
    demo = await token_for(api, "demo")
    created = await create(api, demo, target=receiver.url())
    sub = f"{BASE}/{created['id']}"
    receiver.plan("/hook", Reply(500), Reply(500))
    [delivery_id] = emit(sync_redis, nsettings, [notice()])

    async def status() -> str:
        data = await (await api.get(f"{sub}/deliveries/{delivery_id}", headers=demo)).json()
        return data["status"]

    await asyncio.to_thread(
        work_until, sync_redis, [nsettings.notify_queue_name], lambda: len(receiver.at("/hook")) == 2
    )
    assert await status() == "dead"
    dead = await (await api.get(f"{sub}/deliveries?status=dead", headers=demo)).json()
    [item] = dead["items"]
    assert item["id"] == delivery_id and item["attempts"] == 2 and item["last_status_code"] == 500
    assert [a["status_code"] for a in item["attempt_log"]] == [500, 500]
    assert "token" not in item
    assert (await (await api.get(f"{sub}/deliveries?status=succeeded", headers=demo)).json())["items"] == []

    resp = await api.post(f"{sub}/deliveries/{delivery_id}/replay", headers=demo)
    assert resp.status == 202 and (await resp.json())["status"] == "pending"
    again = await api.post(f"{sub}/deliveries/{delivery_id}/replay", headers=demo)
    assert again.status == 409  # already pending
    await asyncio.to_thread(
        work_until, sync_redis, [nsettings.notify_queue_name], lambda: len(receiver.at("/hook")) == 3
    )
    detail = await (await api.get(f"{sub}/deliveries/{delivery_id}", headers=demo)).json()
    assert detail["status"] == "succeeded" and detail["attempts"] == 3 and detail["replays"] == 1
    assert detail["notice_log"][0]["summary"] == "shop 1.2.3 is live"
    assert len({r.headers["webhook-id"] for r in receiver.at("/hook")}) == 1
    assert (await api.post(f"{sub}/deliveries/nope/replay", headers=demo)).status == 404

    await api.patch(sub, json={"enabled": False}, headers=demo)
    resp = await api.post(f"{sub}/deliveries/{delivery_id}/replay", headers=demo)
    assert resp.status == 409 and "disabled" in (await resp.json())["error"]


async def test_deliveries_are_paged_newest_first(api, receiver, sync_redis, nsettings):
    demo = await token_for(api, "demo")
    created = await create(api, demo, target=receiver.url())
    ids = [emit(sync_redis, nsettings, [notice(summary=f"n{i}")])[0] for i in range(5)]
    url = f"{BASE}/{created['id']}/deliveries"
    first = await (await api.get(f"{url}?limit=2", headers=demo)).json()
    assert [d["id"] for d in first["items"]] == ids[:-3:-1]
    second = await (await api.get(f"{url}?limit=2&cursor={first['next_cursor']}", headers=demo)).json()
    assert [d["id"] for d in second["items"]] == [ids[2], ids[1]]
    for bad in ("limit=0", "limit=1000", "limit=x", "status=lost"):
        assert (await api.get(f"{url}?{bad}", headers=demo)).status == 400


async def test_reenabling_clears_the_disabled_state(api, receiver, sync_redis, nsettings):
    demo = await token_for(api, "demo")
    created = await create(api, demo, target=receiver.url())
    receiver.plan("/hook", Reply(410))
    emit(sync_redis, nsettings, [notice()])
    await asyncio.to_thread(
        work_until, sync_redis, [nsettings.notify_queue_name], lambda: bool(receiver.received)
    )
    sub = f"{BASE}/{created['id']}"
    disabled = await (await api.get(sub, headers=demo)).json()
    assert disabled["enabled"] is False and "410" in disabled["disabled_reason"]
    enabled = await (await api.patch(sub, json={"enabled": True}, headers=demo)).json()
    assert (
        enabled["enabled"] is True and enabled["disabled_reason"] is None and enabled["disabled_at"] is None
    )

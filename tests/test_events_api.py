"""The event log API: auth, filters, cursor paging, team scoping, the SSE live tail, and retention."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from broker.queue import event_queue, retry_policy
from broker.store import ALL_INDEX, SyncEventStore
from tests import payloads
from tests.conftest import DRONE_SECRET, GITEA_SECRET, HARBOR_AUTH, admin_headers
from tests.signing import drone_headers, gitea_headers, harbor_headers


async def post_pushes(client, count: int, *, owner: str = "team-demo") -> list[str]:
    ids = []
    for n in range(count):
        body = payloads.gitea_push(owner=owner, after=payloads.fake_sha(f"{owner}-{n}"))
        resp = await client.post("/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET))
        ids.append((await resp.json())["event_id"])
    return ids


async def test_event_api_needs_a_token(client):
    assert (await client.get("/api/v1/events")).status == 401
    bad = await client.get("/api/v1/events", headers={"Authorization": "Bearer nope"})
    assert bad.status == 401 and (await bad.json())["error"]


async def test_list_is_newest_first_with_a_cursor_that_walks_everything(client):
    ids = await post_pushes(client, 7)
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/events?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url, headers=admin_headers())).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not page["items"] or cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_filters_combine(client):
    await post_pushes(client, 2)
    await post_pushes(client, 1, owner="team-other")
    body = payloads.drone_build(status="failure")
    await client.post("/hooks/drone", data=body, headers=drone_headers(body, DRONE_SECRET))
    body = payloads.harbor_push()
    await client.post("/hooks/harbor", data=body, headers=harbor_headers(HARBOR_AUTH))

    async def ids(query: str) -> list[dict]:
        return (await (await client.get(f"/api/v1/events?{query}", headers=admin_headers())).json())["items"]

    assert len(await ids("source=gitea")) == 3
    assert len(await ids("source=gitea&team=demo")) == 2
    assert len(await ids("team=team-demo&source=gitea")) == 2  # the namespace form works too
    assert [e["type"] for e in await ids("team=demo&type=build")] == ["build"]
    assert [e["repo"] for e in await ids("repo=team-other/hello")] == ["team-other/hello"]
    assert len(await ids("status=queued")) == 5
    assert await ids("source=harbor&status=done") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await ids(f"since={future.replace('+00:00', 'Z')}") == []
    assert (await client.get("/api/v1/events?limit=0", headers=admin_headers())).status == 400
    assert (await client.get("/api/v1/events?since=yesterday", headers=admin_headers())).status == 400


async def test_team_token_sees_only_its_team(client, sync_redis):
    from broker.team_tokens import TOKEN_KEY, token_digest

    sync_redis.hset(TOKEN_KEY.format(digest=token_digest("demo-token")), mapping={"team": "demo"})
    mine = await post_pushes(client, 1)
    theirs = await post_pushes(client, 1, owner="team-other")
    team = {"Authorization": "Bearer demo-token"}

    listing = await (await client.get("/api/v1/events", headers=team)).json()
    assert [e["id"] for e in listing["items"]] == mine
    assert (await client.get("/api/v1/events?team=other", headers=team)).status == 403
    assert (await client.get(f"/api/v1/events/{mine[0]}", headers=team)).status == 200
    assert (await client.get(f"/api/v1/events/{theirs[0]}", headers=team)).status == 404
    assert (await client.post(f"/api/v1/events/{theirs[0]}/replay", headers=team)).status == 404


async def read_frames(resp, count: int, timeout: float = 10) -> list[tuple[str, dict]]:
    frames: list[tuple[str, dict]] = []
    frame_id = None
    async with asyncio.timeout(timeout):
        while len(frames) < count:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line.startswith("id: "):
                frame_id = line[4:]
            elif line.startswith("data: "):
                frames.append((frame_id or "", json.loads(line[6:])))
    return frames


async def test_sse_delivers_new_events_and_resumes_from_last_event_id(client):
    stream = await client.get("/api/v1/events/stream", headers=admin_headers())
    assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
    assert (await stream.content.readline()).startswith(b": connected")
    first, second = await post_pushes(client, 2)
    frames = await read_frames(stream, 2)
    assert [data["id"] for _, data in frames] == [first, second]
    assert frames[0][1]["status"] == "queued" and "payload" not in frames[0][1]
    stream.close()

    # A client that saw only the first change gets the rest again when it reconnects.
    resumed = await client.get(
        "/api/v1/events/stream", headers={**admin_headers(), "Last-Event-ID": frames[0][0]}
    )
    [(_, again)] = await read_frames(resumed, 1)
    assert again["id"] == second
    resumed.close()


async def test_sse_for_a_team_token_carries_only_its_team(client, sync_redis):
    from broker.team_tokens import TOKEN_KEY, token_digest

    sync_redis.hset(TOKEN_KEY.format(digest=token_digest("other-token")), mapping={"team": "other"})
    stream = await client.get("/api/v1/events/stream?access_token=other-token")
    assert stream.status == 200
    await stream.content.readline()
    await post_pushes(client, 2)  # team demo: must not show up
    [theirs] = await post_pushes(client, 1, owner="team-other")
    [(_, data)] = await read_frames(stream, 1)
    assert data["id"] == theirs and data["team"] == "other"
    stream.close()


async def test_retention_trims_by_count(client, settings, sync_redis):
    ids = await post_pushes(client, 6)
    store = SyncEventStore(
        sync_redis, event_queue(settings, sync_redis), retry=retry_policy(settings), retention_s=86400
    )
    store.trim(max_count=4)
    assert sync_redis.zcard(ALL_INDEX) == 4
    listing = await (await client.get("/api/v1/events?limit=10", headers=admin_headers())).json()
    assert [e["id"] for e in listing["items"]] == list(reversed(ids[2:]))
    assert (await client.get(f"/api/v1/events/{ids[0]}", headers=admin_headers())).status == 404
    by_source = await (await client.get("/api/v1/events?source=gitea", headers=admin_headers())).json()
    assert len(by_source["items"]) == 4


async def test_retention_trims_by_age(client, settings, sync_redis):
    await post_pushes(client, 3)
    store = SyncEventStore(
        sync_redis, event_queue(settings, sync_redis), retry=retry_policy(settings), retention_s=3600
    )
    store.trim(max_count=100, now=datetime.now(UTC) + timedelta(hours=2))
    assert sync_redis.zcard(ALL_INDEX) == 0
    assert sync_redis.zcard("broker:events:source:gitea") == 0


async def test_open_streams_do_not_hold_up_shutdown(aiohttp_client, settings):
    from broker.app import create_app

    client = await aiohttp_client(create_app(settings))
    stream = await client.get("/api/v1/events/stream", headers=admin_headers())
    assert (await stream.content.readline()).startswith(b": connected")
    # Without ending the streams on shutdown, aiohttp waits its whole shutdown timeout (60 s) here.
    async with asyncio.timeout(5):
        await client.close()

"""Hostile input at the real endpoint, over real sockets: oversized and malformed HTTP, header injection,
slow bodies and headers, compressed bodies, unicode, unstorable text, absurd nesting, and load shedding.
Every case gets a 4xx (or 503 when shedding), never a 500, and leaves nothing stored.

Malformed HTTP framing (a header line or URL over 8190 bytes, more than 128 headers, a bare CR) is refused
by aiohttp's parser before the app sees the request: 400 with aiohttp's own text/plain body (a repr of
at most ~100 bytes of the offending line; nothing is ever echoed in a response header), then the
connection is closed. Everything the app answers itself is JSON."""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
import zlib

import aiohttp
import pytest

from broker.app import create_app
from tests import payloads
from tests.burst import signed_headers
from tests.conftest import GITEA_SECRET, HARBOR_AUTH, REDIS_URL, admin_headers
from tests.raw_http import exchange, read_answer, request_head
from tests.redis_server import free_port
from tests.signing import gitea_headers, harbor_headers

ALLOWED_RESPONSE_HEADERS = {"content-type", "content-length", "date", "server", "connection", "retry-after"}


def stored_events(sync_redis) -> int:
    return sync_redis.zcard("broker:events")


@pytest.mark.parametrize(
    "raw",
    [
        request_head("/hooks/gitea", {"X-Big": "a" * 10_000, "Content-Length": "2"}) + b"{}",
        request_head("/hooks/gitea", {f"X-H{i}": "v" for i in range(200)} | {"Content-Length": "2"}) + b"{}",
        request_head("/hooks/gitea?" + "a" * 10_000, {"Content-Length": "2"}) + b"{}",
        request_head("/hooks/gitea", {"X-Gitea-Event": "push\rX-Injected: 1", "Content-Length": "2"}) + b"{}",
        request_head("/hooks/gitea", {"Bad Name": "x", "Content-Length": "2"}) + b"{}",
        request_head("/hooks/gitea", {"Content-Length": "2", "Transfer-Encoding": "chunked"}) + b"{}",
    ],
    ids=["header-line-10k", "200-headers", "url-10k", "bare-cr", "space-in-name", "length-and-chunked"],
)
async def test_malformed_http_is_refused_by_the_parser(client, sync_redis, raw):
    answer = await exchange(client.server.port, raw, check_close=True)
    assert answer.status == 400 and answer.closed
    assert set(answer.headers) <= ALLOWED_RESPONSE_HEADERS
    assert stored_events(sync_redis) == 0


async def test_response_headers_never_echo_request_data(client, sync_redis):
    marker = "INJECTED-MARKER"
    body = payloads.gitea_push()
    signed = gitea_headers(body, GITEA_SECRET, delivery=f"d-{marker}")
    cases = [
        # Obsolete line folding would smuggle a header into a naive proxy: refused outright.
        request_head("/hooks/gitea", {"X-Gitea-Event": "push"}, extra=f"\r\n X-{marker}: yes".encode()),
        request_head("/hooks/gitea", {**signed, "Content-Length": str(len(body))}) + body,
        request_head("/hooks/gitea", {**signed, "Content-Type": f"text/{marker}", "Content-Length": "2"})
        + b"{}",
        request_head(f"/hooks/{marker}", {"Content-Length": "2"}) + b"{}",
    ]
    statuses = []
    for raw in cases:
        answer = await exchange(client.server.port, raw)
        statuses.append(answer.status)
        assert set(answer.headers) <= ALLOWED_RESPONSE_HEADERS
        assert not any(marker in value for value in answer.headers.values())
    assert statuses == [400, 202, 415, 404]


async def test_slow_body_gets_408_and_the_connection_is_closed(aiohttp_client, settings, sync_redis):
    app = create_app(settings.model_copy(update={"body_read_timeout_s": 0.3}))
    client = await aiohttp_client(app)
    body = payloads.gitea_push()
    head = request_head(
        "/hooks/gitea", {**gitea_headers(body, GITEA_SECRET), "Content-Length": str(len(body))}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        writer.write(head + body[:100])  # then nothing more: a slowloris
        await writer.drain()
        # Meanwhile an honest sender is served.
        quick = gitea_headers(payloads.gitea_push(after=payloads.fake_sha("quick")), GITEA_SECRET)
        honest = await client.post(
            "/hooks/gitea", data=payloads.gitea_push(after=payloads.fake_sha("quick")), headers=quick
        )
        assert honest.status == 202
        answer = await asyncio.wait_for(read_answer(reader), 5)
        assert answer.status == 408 and "not received" in answer.json()["error"]
        assert answer.headers["connection"] == "close"
        assert await asyncio.wait_for(reader.read(), 2) == b"", "the server hung up"
    finally:
        writer.close()
    assert stored_events(sync_redis) == 1


async def test_connections_whose_request_never_arrives_are_closed(sync_redis, tmp_path):
    """A slowloris trickling its headers, or a connection that sends nothing, is closed by the real
    `broker web` once BROKER_IDLE_TIMEOUT_S passes without a request under way; honest senders meanwhile
    are served. (No request means no in-flight slot, so only this bounds such connections.)"""
    port = free_port()
    env = {
        **os.environ,
        "BROKER_REDIS_URL": REDIS_URL,
        "BROKER_DATA_DIR": str(tmp_path / "data"),
        "BROKER_GITEA_SECRET": GITEA_SECRET,
        "BROKER_IDLE_TIMEOUT_S": "1",
    }
    web_process = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", "web", "--port", str(port)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            await wait_until_serving(session)
            opened = time.monotonic()
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
            idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
            slow_writer.write(b"POST /hooks/gitea HTTP/1.1\r\nHost: broker\r\n")
            trickle = asyncio.create_task(trickle_headers(slow_writer))
            body = payloads.gitea_push(after=payloads.fake_sha("honest"))
            async with session.post(
                "/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET)
            ) as resp:
                assert resp.status == 202
            # EOF, with nothing answered: the server hung up on both.
            assert await asyncio.wait_for(slow_reader.read(), 5) == b""
            assert await asyncio.wait_for(idle_reader.read(), 5) == b""
            closed_after = time.monotonic() - opened
            trickle.cancel()
            slow_writer.close()
            idle_writer.close()
        assert 0.9 <= closed_after < 4, closed_after
        assert stored_events(sync_redis) == 1
    finally:
        web_process.terminate()
        web_process.wait(10)


async def wait_until_serving(session: aiohttp.ClientSession) -> None:
    for _ in range(200):
        try:
            async with session.get("/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    pytest.fail("broker web did not start")


async def trickle_headers(writer: asyncio.StreamWriter) -> None:
    """A header line every 0.2 s, for as long as the server takes them."""
    for index in range(100):
        await asyncio.sleep(0.2)
        writer.write(b"X-Slow-%d: a\r\n" % index)
        try:
            await writer.drain()
        except ConnectionError:
            return


@functools.cache
def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip stream of `inflated_mib` MiB of zeros (about 1/1000 of that on the wire)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1024 * 1024)
    return b"".join(packer.compress(block) for _ in range(inflated_mib)) + packer.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "GZIP", "identity, gzip"])
async def test_compressed_bodies_are_refused_before_they_are_read(client, sync_redis, encoding):
    bomb = gzip_bomb(256)
    headers = {**harbor_headers(HARBOR_AUTH), "Content-Encoding": encoding, "Content-Length": str(len(bomb))}
    # Only the first 8 KiB are sent: the answer cannot depend on reading (let alone inflating) the rest,
    # and the server hangs up rather than read what else comes.
    raw = request_head("/hooks/harbor", headers) + bomb[:8192]
    answer = await exchange(client.server.port, raw, check_close=True)
    assert answer.status == 415 and "Content-Encoding" in answer.json()["error"]
    assert answer.closed
    assert stored_events(sync_redis) == 0


@pytest.mark.parametrize("encoding", ["br", "zstd"])
async def test_codecs_aiohttp_lacks_are_refused_by_the_parser(client, sync_redis, encoding):
    # Without the Brotli / zstd packages aiohttp's parser refuses these itself (400, text/plain).
    headers = {**harbor_headers(HARBOR_AUTH), "Content-Encoding": encoding, "Content-Length": "4"}
    answer = await exchange(
        client.server.port, request_head("/hooks/harbor", headers) + b"\x0b\x00\x80\x03", check_close=True
    )
    assert answer.status in (400, 415) and answer.closed
    assert stored_events(sync_redis) == 0


async def test_chunked_body_over_the_cap_is_413(aiohttp_client, settings, sync_redis):
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_body_bytes": 1024})))
    chunk = b"x" * 600
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    raw = request_head("/hooks/gitea", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    answer = await exchange(client.server.port, raw + frame + frame + frame + b"0\r\n\r\n")
    assert answer.status == 413 and "limit" in answer.json()["error"]
    assert stored_events(sync_redis) == 0


async def test_a_delivery_whose_events_would_store_its_body_over_the_cap_is_413(
    aiohttp_client, settings, sync_redis
):
    # Every event keeps its delivery's body: many resources in one delivery multiply what is stored.
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_body_bytes": 8192})))
    resources = [payloads.harbor_resource(tag=f"1.0.{n}", digest=None) for n in range(40)]
    body = payloads.harbor_push(resources=resources)
    assert len(body) < 8192 < 40 * len(body)
    resp = await client.post("/hooks/harbor", data=body, headers=harbor_headers(HARBOR_AUTH))
    assert resp.status == 413
    assert "40 events" in (await resp.json())["error"]
    assert stored_events(sync_redis) == 0
    # Two resources stay well within it, and are stored as two events.
    body = payloads.harbor_push(resources=resources[:2])
    resp = await client.post("/hooks/harbor", data=body, headers=harbor_headers(HARBOR_AUTH))
    assert resp.status == 202 and len((await resp.json())["event_ids"]) == 2
    assert stored_events(sync_redis) == 2


async def test_unicode_refs_and_tags_are_kept_exactly(client, sync_redis):
    branch = "refs/heads/féature/ünïcødé-🚀-\u202e-漢字"
    body = payloads.gitea_push(ref=branch, message="коммит ✓\n")
    resp = await client.post("/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET))
    assert resp.status == 202
    tag = "1.0.0-βeta+ß"
    harbor = payloads.harbor_push(tag=tag)
    resp2 = await client.post("/hooks/harbor", data=harbor, headers=harbor_headers(HARBOR_AUTH))
    assert resp2.status == 202
    for resp_, field, value in ((resp, "ref", branch), (resp2, "tag", tag)):
        event_id = (await resp_.json())["event_id"]
        record = await (await client.get(f"/api/v1/events/{event_id}", headers=admin_headers())).json()
        assert record[field] == value


def with_text(body: bytes, raw_json_string: bytes) -> bytes:
    """`body` (a JSON object) with an extra field whose value is the given raw JSON string literal."""
    return body[:-1].rstrip() + b', "x_hostile": ' + raw_json_string + b"}"


BODIES = {"gitea": payloads.gitea_push, "drone": payloads.drone_build, "harbor": payloads.harbor_push}


@pytest.mark.parametrize("source", sorted(BODIES))
async def test_unpaired_surrogate_escape_is_400_not_500(client, sync_redis, source):
    # A lone surrogate escape: no UTF-8 store can keep it, so it is refused as the body is parsed.
    body = with_text(BODIES[source](), b'"lone \\ud800 surrogate"')
    resp = await client.post(f"/hooks/{source}", data=body, headers=signed_headers(source, body))
    assert resp.status == 400
    assert (await resp.json())["error"]
    assert stored_events(sync_redis) == 0


async def test_undecodable_header_bytes_never_500(client, sync_redis):
    body = payloads.gitea_push()
    headers = {**gitea_headers(body, GITEA_SECRET), "Content-Length": str(len(body))}
    headers.pop("X-Gitea-Delivery")
    raw = request_head("/hooks/gitea", headers, extra=b"\r\nX-Gitea-Delivery: d-\xff\xfe") + body
    answer = await exchange(client.server.port, raw)
    assert answer.status in (202, 400) and answer.json()
    assert stored_events(sync_redis) == (1 if answer.status == 202 else 0)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000 + b"]" * 200_000,
        with_text(payloads.gitea_push(), b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        with_text(payloads.gitea_push(), b"[" * 900 + b"]" * 900),
    ],
    ids=["200k-deep-array", "100k-deep-field", "900-deep-field"],
)
async def test_absurd_nesting_is_refused_or_stored_never_500(client, sync_redis, body):
    resp = await client.post("/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET))
    answer = await resp.json()
    assert resp.status in (202, 400), answer
    if resp.status == 400:
        assert stored_events(sync_redis) == 0
    else:
        record = await client.get(f"/api/v1/events/{answer['event_id']}", headers=admin_headers())
        assert record.status == 200 and (await record.json())["type"] == "push"


async def test_requests_over_the_in_flight_bound_get_503_with_retry_after(
    aiohttp_client, settings, sync_redis
):
    bounded = settings.model_copy(
        update={"max_inflight": 2, "body_read_timeout_s": 5, "shed_retry_after_s": 3}
    )
    client = await aiohttp_client(create_app(bounded))
    body = payloads.gitea_push()
    head = request_head(
        "/hooks/gitea", {**gitea_headers(body, GITEA_SECRET), "Content-Length": str(len(body))}
    )
    slow = [await asyncio.open_connection("127.0.0.1", client.server.port) for _ in range(2)]
    for _, writer in slow:
        writer.write(head + body[:10])  # two requests now hold both slots
        await writer.drain()
    await asyncio.sleep(0.2)
    other = payloads.gitea_push(after=payloads.fake_sha("other"))
    shed = await client.post("/hooks/gitea", data=other, headers=gitea_headers(other, GITEA_SECRET))
    assert shed.status == 503 and shed.headers["Retry-After"] == "3"
    assert "in flight" in (await shed.json())["error"]
    for reader, writer in slow:  # the slow ones finish their bodies and are served
        writer.write(body[10:])
        await writer.drain()
        assert (await asyncio.wait_for(read_answer(reader), 5)).status in (200, 202)
        writer.close()
    again = await client.post("/hooks/gitea", data=other, headers=gitea_headers(other, GITEA_SECRET))
    assert again.status == 202, "a slot is free again"


async def test_declared_bytes_over_the_bound_get_503(aiohttp_client, settings, sync_redis):
    bounded = settings.model_copy(update={"max_inflight_bytes": 4096, "body_read_timeout_s": 5})
    client = await aiohttp_client(create_app(bounded))
    body = payloads.gitea_push()
    head = request_head(
        "/hooks/gitea", {**gitea_headers(body, GITEA_SECRET), "Content-Length": str(len(body))}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(head + body[:10])  # alone, a 5 KiB body gets in despite the 4 KiB bound
    await writer.drain()
    await asyncio.sleep(0.2)
    other = payloads.gitea_push(after=payloads.fake_sha("other"))
    shed = await client.post("/hooks/gitea", data=other, headers=gitea_headers(other, GITEA_SECRET))
    assert shed.status == 503 and "Retry-After" in shed.headers
    writer.write(body[10:])
    await writer.drain()
    assert (await asyncio.wait_for(read_answer(reader), 5)).status == 202
    writer.close()


async def test_expect_100_continue_is_honoured_and_anything_else_is_a_json_417(
    aiohttp_client, settings, sync_redis
):
    client = await aiohttp_client(create_app(settings.model_copy(update={"max_body_bytes": 8192})))
    body = payloads.gitea_push()
    resp = await client.post(
        "/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET), expect100=True
    )
    assert resp.status == 202
    odd = await client.post(
        "/hooks/gitea", data=body, headers={**gitea_headers(body, GITEA_SECRET), "Expect": "x"}
    )
    assert odd.status == 417 and "100-continue" in (await odd.json())["error"]
    # Over the cap: refused on the headers alone, before the sender is told to continue.
    headers = {**gitea_headers(body, GITEA_SECRET), "Expect": "100-continue", "Content-Length": "9000"}
    answer = await exchange(client.server.port, request_head("/hooks/gitea", headers))
    assert answer.status == 413 and "limit" in answer.json()["error"]
    assert stored_events(sync_redis) == 1

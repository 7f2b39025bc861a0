"""Property tests through the real HTTP endpoint (aiohttp test server on a real socket, real Redis) for all
three senders: arbitrary bytes, almost-right JSON and mutated headers never get a 500. Bad input always
gets a 4xx with a JSON `{"error": ...}` and stores nothing; input that happens to be acceptable gets
200/202. (The in-process fuzzing of every parser and verifier is tests/test_fuzz_parsers.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import payloads
from tests.burst import signed_headers
from tests.raw_http import exchange, request_head

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SOURCES = ("gitea", "drone", "harbor")
VALID: dict[str, Callable[[], bytes]] = {
    "gitea": payloads.gitea_push,
    "drone": payloads.drone_build,
    "harbor": payloads.harbor_push,
}


async def check(client, sync_redis, source: str, body: bytes, headers: dict[str, str], ok: set[int]) -> int:
    """POST and check the invariants; the status."""
    before = sync_redis.zcard("broker:events")
    resp = await client.post(f"/hooks/{source}", data=body, headers=headers)
    assert resp.status != 500
    assert resp.content_type == "application/json"
    answer = await resp.json()
    assert resp.status in ok, (resp.status, answer)
    if resp.status >= 400:
        assert isinstance(answer.get("error"), str) and answer["error"]
        assert sync_redis.zcard("broker:events") == before, "a refused delivery stored nothing"
    return resp.status


@FUZZ
@given(source=st.sampled_from(SOURCES), body=st.binary(max_size=4096))
async def test_signed_arbitrary_bytes(client, sync_redis, source, body):
    # Authentic (correctly signed) garbage reaches the parser: only 400 can come of it.
    await check(client, sync_redis, source, body, signed_headers(source, body), {400})


@FUZZ
@given(data=st.data(), source=st.sampled_from(SOURCES))
async def test_signed_almost_right_json(client, sync_redis, data, source):
    body = data.draw(payloads.mutated(VALID[source]()))
    await check(client, sync_redis, source, body, signed_headers(source, body), {200, 202, 400})


HEADER_NAMES = st.sampled_from(
    [
        "Content-Type",
        "Content-Encoding",
        "Content-Length",
        "Authorization",
        "X-Gitea-Event",
        "X-Gitea-Delivery",
        "X-Gitea-Signature",
        "X-Hub-Signature-256",
        "X-Drone-Event",
        "Date",
        "Digest",
        "Signature",
        "Transfer-Encoding",
        "Expect",
    ]
)
# What an HTTP client can put in a header value: visible Latin-1 and spaces, no CR/LF.
HEADER_VALUES = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)


@FUZZ
@given(
    source=st.sampled_from(SOURCES),
    dropped=st.sets(HEADER_NAMES, max_size=4),
    replaced=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
)
async def test_mutated_headers(client, sync_redis, source, dropped, replaced):
    body = VALID[source]()
    headers = {k: v for k, v in signed_headers(source, body).items() if k not in dropped}
    for name in replaced:  # a replaced header has one value, whatever its case in the signed set
        headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    headers |= {k: v for k, v in replaced.items() if k.lower() not in {"content-length", "transfer-encoding"}}
    status = await check(client, sync_redis, source, body, headers, {200, 202, 400, 401, 408, 413, 415, 417})
    if not dropped and not replaced:
        assert status in (200, 202), "the untouched delivery is accepted (or a duplicate of an earlier one)"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(source=st.sampled_from(SOURCES), name=HEADER_NAMES, value=st.binary(min_size=1, max_size=60))
async def test_raw_header_bytes(client, sync_redis, source, name, value):
    # Any bytes at all in a header value, over a raw socket: the parser or the app refuses, never a 500.
    body = VALID[source]()
    headers = {k: v for k, v in signed_headers(source, body).items() if k.lower() != name.lower()}
    if name.lower() in {"content-length", "transfer-encoding"}:
        name = "X-Fuzz"
    headers["Content-Length"] = str(len(body))
    raw = request_head(f"/hooks/{source}", headers, extra=b"\r\n" + name.encode() + b": " + value) + body
    before = sync_redis.zcard("broker:events")
    answer = await asyncio.wait_for(exchange(client.server.port, raw), 10)
    assert answer.status != 500 and answer.status < 600
    if answer.status >= 400:
        assert sync_redis.zcard("broker:events") == before
    if answer.headers.get("content-type", "").startswith("application/json"):
        assert answer.status < 400 or answer.json()["error"]

"""Raw HTTP/1.1 over a socket, for what an HTTP client library refuses to send (malformed framing, bare CR,
arbitrary header bytes, a body that stops halfway) and to see exactly what the server answers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool = False  # the server hung up right after answering

    def json(self) -> dict:
        return json.loads(self.body)


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawAnswer(int(status_line.split()[1]), headers, body)


async def exchange(
    port: int, *chunks: bytes, timeout_s: float = 10.0, check_close: bool = False
) -> RawAnswer:
    """Send raw bytes, read one HTTP answer, and (`check_close`) see whether the server then hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        answer = await asyncio.wait_for(read_answer(reader), timeout_s)
        if check_close:
            try:
                answer.closed = await asyncio.wait_for(reader.read(1), 2) == b""
            except TimeoutError:
                answer.closed = False
        return answer
    finally:
        writer.close()


def request_head(path: str, headers: dict[str, str], extra: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: broker", *(f"{k}: {v}" for k, v in headers.items())]
    return "\r\n".join(lines).encode("latin-1") + extra + b"\r\n\r\n"

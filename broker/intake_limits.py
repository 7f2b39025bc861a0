"""Bounds that keep the web tier standing under a burst: how many webhook requests it handles at once and
how many body bytes they may declare together. A request over either bound is answered 503 with
`Retry-After` before its body is read, so memory stays bounded (at most `max_inflight_bytes` of bodies,
plus one body when a single large one arrives alone) and no request is ever dropped without an answer."""

from __future__ import annotations

from aiohttp import web


class InflightLimiter:
    def __init__(self, max_requests: int, max_bytes: int) -> None:
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.requests = 0
        self.bytes = 0

    def try_acquire(self, weight: int) -> bool:
        """Take a slot for a request declaring `weight` body bytes; False when over a bound. A request
        alone always gets in, whatever its size (the body cap still applies to it)."""
        if self.requests >= self.max_requests:
            return False
        if self.requests and self.bytes + weight > self.max_bytes:
            return False
        self.requests += 1
        self.bytes += weight
        return True

    def release(self, weight: int) -> None:
        self.requests -= 1
        self.bytes -= weight


LIMITER: web.AppKey[InflightLimiter] = web.AppKey("intake_limiter", InflightLimiter)

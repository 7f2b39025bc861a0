"""Routing as data: one entry per sender, so the web layer dispatches `/hooks/{name}` without an if-chain.

`verify` is given one uniform signature here; each sender uses the parts it needs (only Drone reads the
clock and the skew). `secret_setting` names the `Settings` field holding that sender's secret."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from handlers import drone, gitea, harbor
from handlers.models import Incoming, Source

Headers = Mapping[str, str]


class Verifier(Protocol):
    def __call__(
        self, headers: Headers, body: bytes, secret: str, *, now: float, max_skew_s: int
    ) -> None: ...


def _verify_gitea(headers: Headers, body: bytes, secret: str, *, now: float, max_skew_s: int) -> None:
    gitea.verify(headers, body, secret)


def _verify_harbor(headers: Headers, body: bytes, secret: str, *, now: float, max_skew_s: int) -> None:
    harbor.verify(headers, body, secret)


@dataclass(frozen=True)
class Sender:
    name: Source
    secret_setting: str
    content_types: frozenset[str]
    check_content_type: Callable[[Headers], None]
    verify: Verifier
    parse: Callable[[Headers, bytes], list[Incoming]]


SENDERS: Mapping[str, Sender] = MappingProxyType(
    {
        "gitea": Sender(
            "gitea", "gitea_secret", gitea.CONTENT_TYPES, gitea.check_content_type, _verify_gitea, gitea.parse
        ),
        "drone": Sender(
            "drone", "drone_secret", drone.CONTENT_TYPES, drone.check_content_type, drone.verify, drone.parse
        ),
        "harbor": Sender(
            "harbor",
            "harbor_auth",
            harbor.CONTENT_TYPES,
            harbor.check_content_type,
            _verify_harbor,
            harbor.parse,
        ),
    }
)

"""Server-side request forgery guard: a team must not point the broker at the cluster's insides.

A target host is resolved and every address it resolves to must be public (not loopback, link-local,
private, shared/CGNAT, multicast, reserved or unspecified; IPv4-mapped IPv6 is judged by its IPv4), unless
ops list its network in `BROKER_NOTIFY_SSRF_ALLOW`. The check runs when a subscription is created or its
target changes, and again before every delivery attempt; webhook requests then connect to the address
that was checked (see transport.py), so DNS rebinding between check and connect does not get through."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SSRFError(Exception):
    """The target is refused (a 400 at creation, a dead delivery at send time)."""


class ResolveError(Exception):
    """The host does not resolve right now (worth a retry at send time)."""


@dataclass(frozen=True)
class Checked:
    host: str
    port: int
    addresses: tuple[str, ...]  # every address the host resolved to, all allowed; connect to [0]


def parse_allow(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Ops' allow-list: CIDRs or single addresses. A bad entry is a configuration error, raised loudly."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address is not a public destination, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal_reason(address.ipv4_mapped)
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
    ):
        if flag:
            return reason
    return None if address.is_global else "not globally routable"


def check_address(address: IPAddress, allow: Sequence[IPNetwork]) -> str | None:
    reason = refusal_reason(address)
    if reason is None or any(address.version == net.version and address in net for net in allow):
        return None
    return reason


def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"{host} does not resolve: {exc}") from None
    seen: dict[str, IPAddress] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        seen.setdefault(text, ipaddress.ip_address(text))
    if not seen:
        raise ResolveError(f"{host} resolves to no address")
    return list(seen.values())


def check_host(host: str, port: int, allow: Sequence[IPNetwork]) -> Checked:
    """Resolve `host` and refuse it if any address is not allowed (an attacker controlling DNS could
    otherwise hand out one public and one private address and hope we pick the second)."""
    addresses = resolve(host, port)
    for address in addresses:
        reason = check_address(address, allow)
        if reason is not None:
            raise SSRFError(
                f"target host {host} resolves to {address} ({reason}); refused: ask ops to allow it "
                "in BROKER_NOTIFY_SSRF_ALLOW if this is intended"
            )
    return Checked(host=host, port=port, addresses=tuple(str(a) for a in addresses))


def check_hosts(hosts: Iterable[tuple[str, int]], allow: Sequence[IPNetwork]) -> list[Checked]:
    return [check_host(host, port, allow) for host, port in hosts]

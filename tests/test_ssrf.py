"""SSRF guard: which addresses are refused, the ops allow-list, resolution before judging (names and odd
IP spellings), and which hosts a target URL (webhook or apprise) will actually reach."""

from __future__ import annotations

import ipaddress

import pytest

from broker.notify import service, ssrf, targets
from broker.notify.config import NotifyConfig
from broker.notify.models import Target


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "private"),  # reserved, and Python also counts it private
        ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 judged as IPv4
        ("::ffff:10.0.0.1", "private"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_refusal_reasons(address: str, reason: str | None) -> None:
    assert ssrf.refusal_reason(ipaddress.ip_address(address)) == reason


def test_allow_list_admits_only_its_networks() -> None:
    allow = ssrf.parse_allow(["127.0.0.1/32", "10.0.0.0/8"])
    assert ssrf.check_address(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert ssrf.check_address(ipaddress.ip_address("10.200.0.1"), allow) is None
    assert ssrf.check_address(ipaddress.ip_address("127.0.0.2"), allow) == "loopback"
    assert ssrf.check_address(ipaddress.ip_address("192.168.0.1"), allow) == "private"
    with pytest.raises(ValueError):
        ssrf.parse_allow(["not-a-network"])


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "2130706433", "0x7f.1", "127.1"])
def test_names_and_odd_spellings_are_resolved_before_judging(host: str) -> None:
    with pytest.raises(ssrf.SSRFError, match="loopback"):
        ssrf.check_host(host, 80, ())
    checked = ssrf.check_host(host, 80, ssrf.parse_allow(["127.0.0.0/8"]))
    assert checked.addresses == ("127.0.0.1",)


def test_unresolvable_host_is_a_resolve_error() -> None:
    with pytest.raises(ssrf.ResolveError):
        ssrf.check_host("no-such-host.invalid", 443, ())


def test_network_hosts_of_targets() -> None:
    assert targets.network_hosts(Target(type="webhook", url="https://hooks.example.com/x")) == [
        ("hooks.example.com", 443)
    ]
    assert targets.network_hosts(Target(type="webhook", url="http://[::1]:8080/x")) == [("::1", 8080)]
    assert targets.network_hosts(Target(type="apprise", url="json://10.0.0.5:9000/hook")) == [
        ("10.0.0.5", 9000)
    ]
    assert targets.network_hosts(Target(type="apprise", url="mmost://chat.internal/abcdef0123456789")) == [
        ("chat.internal", 80)
    ]
    # Token-in-host schemes reach a fixed public service: nothing for the team to point elsewhere.
    slack = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
    assert targets.network_hosts(Target(type="apprise", url=slack)) == []
    # Email may relay through a named SMTP server: that host is checked too.
    mail = "mailtos://user:pass@example.com?smtp=smtp.internal&to=ops@example.com"
    assert ("smtp.internal", 587) in targets.network_hosts(Target(type="apprise", url=mail))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "https://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://10.0.0.1/x",
        "json://192.168.0.10/notify",
        "mmost://127.0.0.1/abcdef0123456789",
    ],
)
def test_targets_resolving_inside_are_refused_without_an_allowance(url: str) -> None:
    with pytest.raises(service.InvalidTarget, match="refused"):
        service.check_target(Target.model_validate(url), NotifyConfig())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "apprise"),  # not http(s): taken as apprise, which has no ftp://
        ("syslog://", "broker host"),
        ("windows://", "broker host"),
        ("http:///nohost", "needs a host"),
        ("http://example.com:99999/x", "malformed"),
    ],
)
def test_unsupported_targets_are_refused(url: str, message: str) -> None:
    with pytest.raises(service.InvalidTarget, match=message):
        service.check_target(Target.model_validate(url), NotifyConfig())


def test_allowed_local_target_passes() -> None:
    service.check_target(
        Target.model_validate("http://127.0.0.1:9/hook"), NotifyConfig(ssrf_allow=("127.0.0.1/32",))
    )

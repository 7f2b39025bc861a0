"""Delivery jobs against a real local HTTP receiver: Standard Webhooks signatures checked with the
`standardwebhooks` library, retries and dead deliveries, 429 + Retry-After, 410, timeouts, secret
rotation, auto-disable with the team told, SSRF at send time, and a chat channel through apprise's own
`json://` plugin. rq runs in-process (burst workers that also move due scheduled retries)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import redis

from broker.notify import service, transport
from broker.notify.config import NotifyConfig
from broker.notify.delivery import Deliverer
from broker.notify.fanout import emit
from broker.notify.models import Delivery, SubscriptionIn
from broker.notify.store import NotifyStore
from broker.settings import Settings
from handlers.notices import Notice
from tests.notify_support import (  # noqa: F401 (fixtures, registered by name)
    Receiver,
    Reply,
    notify_settings,
    nsettings_fixture,
    receiver_fixture,
    work_until,
)

TEAM = "demo"


def notice(
    kind: str = "deployment.succeeded", app: str = "shop", summary: str = "shop 1.2.3 is live", **kw: Any
):
    data = {"image": "harbor.example.com/team-demo/shop", "tag": "1.2.3", "commit": "abc123"}
    return Notice(kind=kind, team=kw.pop("team", TEAM), app=app, summary=summary, data=data, **kw)


def subscribe(client: redis.Redis, settings: Settings, url: str, **fields: Any) -> tuple[str, str | None]:
    config = NotifyConfig.from_settings(settings)
    body = SubscriptionIn.model_validate({"target": url, **fields})
    sub, secret = service.create(NotifyStore(client), config, fields.pop("team", TEAM), body)
    return sub.id, secret


def only_delivery(client: redis.Redis, sub_id: str) -> Delivery:
    found, _ = NotifyStore(client).deliveries(sub_id)
    assert len(found) == 1
    return found[0]


def settle(client: redis.Redis, settings: Settings, sub_id: str, *statuses: str) -> Delivery:
    """Work the notify queue until the subscription's single delivery reaches one of `statuses`."""
    work_until(client, [settings.notify_queue_name], lambda: only_delivery(client, sub_id).status in statuses)
    return only_delivery(client, sub_id)


def test_signed_webhook_verifies_with_standardwebhooks(sync_redis, nsettings, receiver):
    sub_id, secret = subscribe(sync_redis, nsettings, receiver.url())
    assert secret is not None and secret.startswith("whsec_")
    ids = emit(sync_redis, nsettings, [notice()])
    assert len(ids) == 1
    delivery = settle(sync_redis, nsettings, sub_id, "succeeded")

    [request] = receiver.at("/hook")
    payload = request.verify(secret)
    assert payload["type"] == "deployment.succeeded"
    assert payload["data"]["app"] == "shop" and payload["data"]["details"]["tag"] == "1.2.3"
    assert "shop 1.2.3 is live" in payload["data"]["message"]
    assert request.headers["webhook-id"] == delivery.message_id == f"msg_{ids[0]}"
    assert not request.verifies_with(service.signing.new_secret())  # another secret does not verify
    assert delivery.attempts == 1 and delivery.last_status_code == 200
    attempts = NotifyStore(sync_redis).attempts(delivery.id)
    assert attempts[0].address == "127.0.0.1" and attempts[0].status_code == 200


def test_failures_are_retried_with_the_same_webhook_id(sync_redis, nsettings, receiver):
    sub_id, secret = subscribe(sync_redis, nsettings, receiver.url())
    receiver.plan("/hook", Reply(500), Reply(503))
    emit(sync_redis, nsettings, [notice()])
    delivery = settle(sync_redis, nsettings, sub_id, "succeeded", "dead")

    assert delivery.status == "succeeded" and delivery.attempts == 3
    requests = receiver.at("/hook")
    assert [r.verifies_with(secret) for r in requests] == [True, True, True]
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    codes = [a.status_code for a in NotifyStore(sync_redis).attempts(delivery.id)]
    assert codes == [500, 503, 200]


def test_delivery_is_dead_after_the_schedule_and_replayable(sync_redis, nsettings, receiver):
    sub_id, _ = subscribe(sync_redis, nsettings, receiver.url())
    receiver.plan("/hook", *[Reply(500)] * 3)
    emit(sync_redis, nsettings, [notice()])
    dead = settle(sync_redis, nsettings, sub_id, "succeeded", "dead")
    assert dead.status == "dead" and dead.attempts == 3  # first try plus the two retries of the schedule
    assert dead.last_error == "HTTP 500"
    store = NotifyStore(sync_redis)
    assert [d.id for d in store.deliveries(sub_id, status="dead")[0]] == [dead.id]
    assert store.health(sub_id).consecutive_dead == 1

    sub = store.subscription(sub_id)
    assert sub is not None
    replayed = service.replay(store, NotifyConfig.from_settings(nsettings), sub, dead.id)
    assert replayed.status == "pending" and replayed.replays == 1
    done = settle(sync_redis, nsettings, sub_id, "succeeded", "dead")
    assert done.status == "succeeded" and done.attempts == 4
    assert len({r.headers["webhook-id"] for r in receiver.at("/hook")}) == 1
    assert store.health(sub_id).consecutive_dead == 0


def test_retry_after_on_429_is_honoured(sync_redis, nsettings, receiver):
    sub_id, _ = subscribe(sync_redis, nsettings, receiver.url())
    receiver.plan("/hook", Reply(429, {"Retry-After": "1"}))
    emit(sync_redis, nsettings, [notice()])
    work_until(sync_redis, [nsettings.notify_queue_name], lambda: len(receiver.at("/hook")) >= 1)
    waiting = only_delivery(sync_redis, sub_id)
    assert waiting.status == "retrying" and waiting.last_status_code == 429
    [attempt] = NotifyStore(sync_redis).attempts(waiting.id)
    assert attempt.next_retry_s == 1.0  # the receiver's 1 s, not the schedule's 0.1 s
    done = settle(sync_redis, nsettings, sub_id, "succeeded")
    first, second = receiver.at("/hook")
    gap = int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"])
    assert gap >= 1 and done.attempts == 2


def test_retry_after_is_capped_and_jitter_stays_in_bounds(sync_redis, settings):
    config = NotifyConfig.from_settings(
        notify_settings(settings, notify_retry_schedule=[10, 100], notify_retry_jitter=0.2,
                        notify_max_retry_after_s=50)
    )  # fmt: skip
    deliverer = Deliverer(sync_redis, config)
    delays = [deliverer.next_delay(1, None) for _ in range(200)]
    assert all(d is not None and 8 <= d <= 12 for d in delays) and len(set(delays)) > 1
    assert deliverer.next_delay(1, 3600) == 50  # Retry-After beyond the cap waits the cap
    assert deliverer.next_delay(3, None) is None  # schedule spent: dead


def test_410_disables_the_subscription_and_tells_the_team(sync_redis, nsettings, receiver):
    gone_id, _ = subscribe(sync_redis, nsettings, receiver.url("/gone"), kinds=["deployment.succeeded"])
    other_id, other_secret = subscribe(sync_redis, nsettings, receiver.url("/other"), kinds=["build.failed"])
    receiver.plan("/gone", Reply(410))
    emit(sync_redis, nsettings, [notice()])
    delivery = settle(sync_redis, nsettings, gone_id, "dead", "succeeded")
    assert delivery.status == "dead" and delivery.attempts == 1  # no retry after 410

    store = NotifyStore(sync_redis)
    sub = store.subscription(gone_id)
    assert sub is not None and not sub.enabled and "410" in (sub.disabled_reason or "")
    # The team's other subscription hears about it even though its kinds filter names only build.failed.
    told = settle(sync_redis, nsettings, other_id, "succeeded")
    payload = receiver.at("/other")[0].verify(other_secret)
    assert told.kind == payload["type"] == "subscription.disabled"
    assert payload["data"]["details"]["subscription_id"] == gone_id
    # A disabled subscription gets no new deliveries.
    assert emit(sync_redis, nsettings, [notice(summary="another")]) == []


def test_slow_receiver_times_out_and_is_retried(sync_redis, settings, receiver):
    quick = notify_settings(settings, notify_timeout_s=0.3)
    sub_id, _ = subscribe(sync_redis, quick, receiver.url())
    receiver.plan("/hook", Reply(200, delay_s=1.5))
    emit(sync_redis, quick, [notice()])
    delivery = settle(sync_redis, quick, sub_id, "succeeded", "dead")
    first = NotifyStore(sync_redis).attempts(delivery.id)[0]
    assert first.status_code is None and "timeout" in (first.error or "").lower()
    assert first.duration_ms < 1200
    assert delivery.status == "succeeded" and delivery.attempts == 2


def test_consecutive_dead_deliveries_disable_the_subscription(sync_redis, settings, receiver):
    strict = notify_settings(settings, notify_retry_schedule=[], notify_disable_after_dead=2)
    failing_id, _ = subscribe(sync_redis, strict, receiver.url("/failing"))
    watcher_id, _ = subscribe(sync_redis, strict, receiver.url("/watcher"), kinds=["subscription.disabled"])
    receiver.plan("/failing", Reply(500), Reply(500))
    store = NotifyStore(sync_redis)
    emit(sync_redis, strict, [notice(summary="one")])
    work_until(sync_redis, [strict.notify_queue_name], lambda: store.health(failing_id).consecutive_dead == 1)
    sub = store.subscription(failing_id)
    assert sub is not None and sub.enabled  # one dead delivery is not enough
    emit(sync_redis, strict, [notice(summary="two")])
    work_until(sync_redis, [strict.notify_queue_name], lambda: len(receiver.at("/watcher")) == 1)
    sub = store.subscription(failing_id)
    assert sub is not None and not sub.enabled and "2 deliveries in a row" in (sub.disabled_reason or "")
    assert receiver.at("/watcher")[0].json()["data"]["details"]["subscription_id"] == failing_id
    assert store.deliveries(watcher_id)[0][0].kind == "subscription.disabled"


def test_failing_for_too_long_disables(sync_redis, settings, receiver):
    impatient = notify_settings(settings, notify_retry_schedule=[0.1, 0.1, 0.1], notify_disable_after_s=0.0)
    sub_id, _ = subscribe(sync_redis, impatient, receiver.url())
    receiver.plan("/hook", *[Reply(500)] * 4)
    emit(sync_redis, impatient, [notice()])
    delivery = settle(sync_redis, impatient, sub_id, "dead", "succeeded")
    sub = NotifyStore(sync_redis).subscription(sub_id)
    assert sub is not None and not sub.enabled and "failing without a success" in (sub.disabled_reason or "")
    assert delivery.status == "dead" and delivery.attempts == 2  # stopped early, not after the schedule


def test_rotation_signs_with_old_and_new_secret_during_the_overlap(sync_redis, nsettings, receiver):
    sub_id, old_secret = subscribe(sync_redis, nsettings, receiver.url())
    store = NotifyStore(sync_redis)
    config = NotifyConfig.from_settings(nsettings)
    sub = store.subscription(sub_id)
    assert sub is not None and old_secret is not None
    _, new_secret = service.rotate_secret(store, config, sub)
    emit(sync_redis, nsettings, [notice()])
    settle(sync_redis, nsettings, sub_id, "succeeded")
    [request] = receiver.at("/hook")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert request.verifies_with(old_secret) and request.verifies_with(new_secret)

    # With no overlap, the next rotation drops every older secret at once.
    no_overlap = NotifyConfig.from_settings(notify_settings(nsettings, notify_secret_overlap_s=0))
    sub = store.subscription(sub_id)
    assert sub is not None
    _, newest = service.rotate_secret(store, no_overlap, sub)
    emit(sync_redis, nsettings, [notice(summary="after rotation")])
    work_until(sync_redis, [nsettings.notify_queue_name], lambda: len(receiver.at("/hook")) == 2)
    latest = receiver.at("/hook")[1]
    assert latest.verifies_with(newest) and not latest.verifies_with(new_secret)
    assert not latest.verifies_with(old_secret)


def test_apprise_json_channel_with_template(sync_redis, nsettings, receiver):
    url = receiver.url("/chat").replace("http://", "json://")
    template = "$app $tag deployed ($commit) by $kind"
    sub_id, secret = subscribe(sync_redis, nsettings, url, template=template)
    assert secret is None  # chat channels are not signed
    emit(sync_redis, nsettings, [notice()])
    settle(sync_redis, nsettings, sub_id, "succeeded")
    [request] = receiver.at("/chat")
    body = request.json()
    assert body["message"] == "shop 1.2.3 deployed (abc123) by deployment.succeeded"
    assert body["title"] == "[demo/shop] deployment.succeeded" and body["type"] == "success"
    assert "webhook-signature" not in request.headers


def test_apprise_channel_failure_is_retried_then_dead(sync_redis, nsettings, receiver):
    sub_id, _ = subscribe(sync_redis, nsettings, receiver.url("/chat").replace("http://", "json://"))
    receiver.plan("/chat", *[Reply(502)] * 3)
    emit(sync_redis, nsettings, [notice()])
    delivery = settle(sync_redis, nsettings, sub_id, "dead", "succeeded")
    assert delivery.status == "dead" and delivery.attempts == 3
    assert "502" in (delivery.last_error or "")


def test_ssrf_is_checked_again_at_delivery_time(sync_redis, nsettings, receiver):
    sub_id, _ = subscribe(sync_redis, nsettings, receiver.url())  # allowed when created
    locked_down = notify_settings(nsettings, notify_ssrf_allow=[])  # ops withdrew the allowance
    emit(sync_redis, locked_down, [notice()])
    delivery = settle(sync_redis, locked_down, sub_id, "dead", "succeeded")
    assert delivery.status == "dead" and "loopback" in (delivery.last_error or "")
    assert delivery.attempts == 1 and receiver.received == []


def test_webhook_connects_to_the_checked_address_not_a_fresh_lookup(receiver):
    """The host name is only used for the Host header: the connection goes to the address given."""
    url = f"http://rebinding.invalid:{receiver.port}/pinned?x=1"
    result = transport.post_webhook(url, "127.0.0.1", "{}", {"webhook-id": "msg_1"}, timeout_s=2)
    assert result.ok and result.status_code == 200
    [request] = receiver.at("/pinned")
    assert request.headers["Host"] == f"rebinding.invalid:{receiver.port}"


def test_basic_auth_from_the_url_and_no_redirects(sync_redis, nsettings, receiver):
    url = receiver.url("/auth").replace("http://", "http://user:p%40ss@")
    sub_id, _ = subscribe(sync_redis, nsettings, url)
    receiver.plan("/auth", Reply(302, {"Location": "http://169.254.169.254/"}), Reply(200))
    emit(sync_redis, nsettings, [notice()])
    delivery = settle(sync_redis, nsettings, sub_id, "succeeded", "dead")
    assert [a.status_code for a in NotifyStore(sync_redis).attempts(delivery.id)] == [302, 200]
    assert receiver.at("/auth")[0].headers["Authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    assert all(r.path == "/auth" for r in receiver.received)  # the redirect was not followed


def test_a_stale_job_does_nothing(sync_redis, nsettings, receiver):
    sub_id, _ = subscribe(sync_redis, nsettings, receiver.url())
    emit(sync_redis, nsettings, [notice()])
    delivery = only_delivery(sync_redis, sub_id)
    deliverer = Deliverer(sync_redis, NotifyConfig.from_settings(nsettings))
    assert deliverer.run(delivery.id, "not-the-token") == "stale"
    assert deliverer.run(delivery.id, delivery.token) == "succeeded"
    assert deliverer.run(delivery.id, delivery.token) == "stale"  # the queued duplicate job
    assert len(receiver.at("/hook")) == 1


def test_default_chat_text_says_what_deployed(sync_redis, nsettings, receiver):
    sub_id, _ = subscribe(sync_redis, nsettings, receiver.url("/chat").replace("http://", "json://"))
    data = {
        "image": "harbor.example.com/team-demo/shop:1.2.3@sha256:abc",
        "commit": "abc123",
        "commit_message": "fix the cart",
        "build_link": "https://drone.example.com/demo/shop/12",
        "pusher": "alice",
        "argocd": {"phase": "Succeeded", "health": "Healthy"},
    }
    live = Notice(kind="deployment.succeeded", team=TEAM, app="shop", summary="shop is live", data=data)
    emit(sync_redis, nsettings, [live])
    settle(sync_redis, nsettings, sub_id, "succeeded")
    lines = receiver.at("/chat")[0].json()["message"].splitlines()
    assert lines[0] == "shop is live"
    for expected in (
        "image: harbor.example.com/team-demo/shop:1.2.3@sha256:abc",
        "commit: abc123",
        "commit message: fix the cart",
        "build link: https://drone.example.com/demo/shop/12",
        "pushed by: alice",
        "Argo CD sync: Succeeded",
        "Argo CD health: Healthy",
    ):
        assert expected in lines


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_https_is_pinned_too_with_the_certificate_checked_against_the_host_name(tmp_path):
    cert, key = self_signed(tmp_path, "hooks.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = Receiver(ssl_context=context).start()
    try:
        url = f"https://hooks.test:{server.port}/tls"  # the name does not resolve: the address is pinned
        ok = transport.post_webhook(url, "127.0.0.1", "{}", {}, timeout_s=3, ca_bundle=str(cert))
        assert ok.ok and server.at("/tls")[0].headers["Host"] == f"hooks.test:{server.port}"
        wrong_name = transport.post_webhook(
            url.replace("hooks.test", "other.test"), "127.0.0.1", "{}", {}, timeout_s=3, ca_bundle=str(cert)
        )
        assert not wrong_name.ok and "doesn't match" in (wrong_name.error or "")
        untrusted = transport.post_webhook(url, "127.0.0.1", "{}", {}, timeout_s=3)  # certifi's bundle
        assert not untrusted.ok and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")
        assert len(server.at("/tls")) == 1
    finally:
        server.stop()

"""Fan-out: which subscriptions a notice reaches (team, kinds, app globs, enabled), one rq job per
delivery on the notify queue, the dedup window, and folding a burst for one app into one message."""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue

from broker.notify import service
from broker.notify.config import NotifyConfig
from broker.notify.fanout import emit
from broker.notify.models import SubscriptionIn
from broker.notify.store import NotifyStore
from broker.settings import Settings
from handlers.notices import Notice
from tests.notify_support import (  # noqa: F401 (fixtures, registered by name)
    notify_settings,
    nsettings_fixture,
    receiver_fixture,
    work_until,
)


def subscribe(client: redis.Redis, settings: Settings, team: str, url: str, **fields: Any) -> str:
    body = SubscriptionIn.model_validate({"target": url, **fields})
    sub, _ = service.create(NotifyStore(client), NotifyConfig.from_settings(settings), team, body)
    return sub.id


def notice(
    kind: str = "deployment.succeeded", team: str | None = "demo", app: str | None = "shop", **kw: Any
):
    return Notice(kind=kind, team=team, app=app, summary=kw.pop("summary", f"{app} {kind}"), **kw)


def delivered_to(client: redis.Redis, sub_id: str) -> list[str]:
    return [d.kind for d in NotifyStore(client).deliveries(sub_id)[0]]


def test_filters_by_team_kind_app_and_enabled(sync_redis, nsettings, receiver):
    url = receiver.url()
    every = subscribe(sync_redis, nsettings, "demo", url)
    failures = subscribe(sync_redis, nsettings, "demo", url, kinds=["deployment.failed", "build.failed"])
    shop_glob = subscribe(sync_redis, nsettings, "demo", url, apps=["shop-*"])
    paused = subscribe(sync_redis, nsettings, "demo", url, enabled=False)
    other_team = subscribe(sync_redis, nsettings, "other", url)

    ids = emit(
        sync_redis,
        nsettings,
        [
            notice("deployment.succeeded", app="shop-api"),
            notice("build.failed", app="billing"),
            notice("event.ignored", app=None),
            notice("no.such.kind"),  # not in the closed set: dropped
            notice("deployment.failed", team=None),  # no team, no audience
        ],
    )
    assert sorted(delivered_to(sync_redis, every)) == [
        "build.failed",
        "deployment.succeeded",
        "event.ignored",
    ]
    assert delivered_to(sync_redis, failures) == ["build.failed"]
    assert delivered_to(sync_redis, shop_glob) == [
        "deployment.succeeded"
    ]  # a notice without app misses a glob
    assert delivered_to(sync_redis, paused) == []
    assert delivered_to(sync_redis, other_team) == []
    assert len(ids) == 5
    queue = Queue(nsettings.notify_queue_name, connection=sync_redis)
    assert queue.count == 5  # one rq job per delivery, on the notify queue
    assert Queue(nsettings.queue_name, connection=sync_redis).count == 0  # never on the event queue


def test_dedup_window_sends_the_same_notice_once(sync_redis, nsettings, receiver):
    sub_id = subscribe(sync_redis, nsettings, "demo", receiver.url())
    same = notice(event_id="ev1", data={"at": "12:00:01"})
    again = notice(event_id="ev1", data={"at": "12:00:02"})  # only volatile data differs
    assert len(emit(sync_redis, nsettings, [same])) == 1
    assert emit(sync_redis, nsettings, [again]) == []
    assert len(emit(sync_redis, nsettings, [notice(event_id="ev2")])) == 1
    no_dedup = notify_settings(nsettings, notify_dedup_window_s=0)
    assert len(emit(sync_redis, no_dedup, [same])) == 1
    assert len(delivered_to(sync_redis, sub_id)) == 3


def test_a_burst_for_one_app_is_folded_into_one_message(sync_redis, settings, receiver):
    folding = notify_settings(settings, notify_fold_window_s=1.0)
    sub_id = subscribe(sync_redis, folding, "demo", receiver.url())
    burst = [
        notice("image.pushed", summary="shop 1.2.3 pushed"),
        notice("sync.started", summary="shop sync started"),
        notice("deployment.succeeded", summary="shop 1.2.3 is live"),
        notice("deployment.succeeded", app="billing", summary="billing is live"),
    ]
    created = emit(sync_redis, folding, burst[:2])
    created += emit(sync_redis, folding, burst[2:])
    assert len(created) == 2  # one for shop (three notices), one for billing
    store = NotifyStore(sync_redis)
    shop = next(d for d in store.deliveries(sub_id)[0] if d.app == "shop")
    assert shop.notices == 3 and shop.kind == "deployment.succeeded" and shop.status == "pending"

    work_until(sync_redis, [folding.notify_queue_name], lambda: len(receiver.at("/hook")) == 2)
    bodies = {r.json()["data"]["app"]: r.json() for r in receiver.at("/hook")}
    assert bodies["shop"]["type"] == "deployment.succeeded"
    assert [f["kind"] for f in bodies["shop"]["data"]["folded"]] == ["image.pushed", "sync.started"]
    assert "Earlier in this burst" in bodies["shop"]["data"]["message"]
    assert "folded" not in bodies["billing"]["data"]
    # The window closed with the send: the next notice for shop starts a new delivery.
    assert len(emit(sync_redis, folding, [notice("sync.failed", summary="shop sync failed")])) == 1


def test_emit_uses_the_settings_queue_name(sync_redis, settings, receiver):
    custom = notify_settings(settings, notify_queue_name="team-notify-test")
    subscribe(sync_redis, custom, "demo", receiver.url())
    [delivery_id] = emit(sync_redis, custom, [notice()])
    [job] = Queue("team-notify-test", connection=sync_redis).get_jobs()
    assert job.args[0] == delivery_id and job.func_name == "broker.notify.delivery.deliver_job"
    assert job.retries_left == 2  # rq re-runs it if its worker dies mid-attempt (same token: at-least-once)

"""/metrics: every intake outcome and rejection moves its counter; worker-side series (processed, latency,
write-backs, syncs, deliveries, catalog size) recorded in Redis by another process show up in the web's
scrape; queue depth and the oldest job's age are read at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from rq import Queue

from broker import metrics
from broker.app import create_app
from broker.notify import service
from broker.notify.config import NotifyConfig
from broker.notify.fanout import emit
from broker.notify.models import SubscriptionIn
from broker.notify.store import NotifyStore
from broker.pins import PinStore
from broker.worker import no_cluster
from handlers.models import Event, Outcome
from handlers.notices import Notice
from tests import payloads
from tests.argocd_emulator import FakeController
from tests.conftest import DRONE_SECRET, GITEA_SECRET, HARBOR_AUTH
from tests.gitops_fixtures import classic_app, harbor_event, make_gitops, run_event, seed_all, worker_for
from tests.notify_support import Receiver, Reply, notify_settings, work_until
from tests.signing import drone_headers, gitea_headers, harbor_headers
from tests.test_pins_api import pin
from tests.worker_support import make_context, run_burst

pytest_plugins = ["tests.gitops_plugin"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client, headers: dict[str, str] | None = None) -> Samples:
    resp = await client.get("/metrics", headers=headers or {})
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= set(lbls))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def post_gitea(client, body: bytes, **header_args) -> int:
    resp = await client.post(
        "/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET, **header_args)
    )
    return resp.status


async def test_every_intake_outcome_and_rejection_moves_its_counter(client, settings):
    before = await scrape(client)
    push = payloads.gitea_push(after=payloads.fake_sha("metrics-push"))
    assert await post_gitea(client, push, delivery="d-1") == 202
    assert await post_gitea(client, push, delivery="d-1") == 200  # the same delivery again
    assert await post_gitea(client, payloads.gitea_test_delivery()) == 202  # recorded as ignored
    harbor = payloads.harbor_push()
    assert (
        await client.post("/hooks/harbor", data=harbor, headers=harbor_headers(HARBOR_AUTH))
    ).status == 202
    drone = payloads.drone_build(status="success")
    assert (
        await client.post("/hooks/drone", data=drone, headers=drone_headers(drone, DRONE_SECRET))
    ).status == 202

    bad_sig = gitea_headers(push, "wrong-secret")
    assert (await client.post("/hooks/gitea", data=push, headers=bad_sig)).status == 401
    assert await post_gitea(client, b'{"not": "a push"') == 400
    form = gitea_headers(push, GITEA_SECRET, content_type="text/plain")
    assert (await client.post("/hooks/gitea", data=push, headers=form)).status == 415
    huge = b"x" * (settings.max_body_bytes + 1)
    assert (
        await client.post("/hooks/gitea", data=huge, headers=gitea_headers(huge, GITEA_SECRET))
    ).status == 413
    after = await scrape(client)

    assert (
        moved(before, after, "broker_webhooks_received_total", source="gitea", type="push", outcome="queued")
        == 1
    )
    assert moved(before, after, "broker_webhooks_received_total", source="gitea", outcome="duplicate") == 1
    assert moved(before, after, "broker_webhooks_received_total", source="gitea", outcome="ignored") == 1
    assert moved(before, after, "broker_webhooks_received_total", source="harbor", outcome="queued") == 1
    assert moved(before, after, "broker_webhooks_received_total", source="drone", outcome="queued") == 1
    for reason in ("401", "400", "415", "413"):
        assert moved(before, after, "broker_webhook_rejections_total", source="gitea", reason=reason) == 1, (
            reason
        )
    assert moved(before, after, "broker_intake_seconds_count", source="gitea") == 3  # answered deliveries

    # Queue depth and age are read from rq at scrape time: 3 event jobs + the ignored event's announcement.
    rq_depth = Queue(settings.queue_name, connection=make_context(settings)[0].redis).count
    assert value(after, "broker_queue_depth", queue=settings.queue_name) == rq_depth == 4
    assert value(after, "broker_queue_oldest_job_age_seconds", queue=settings.queue_name) > 0
    assert value(after, "broker_queue_depth", queue=settings.notify_queue_name) == 0
    assert value(after, "broker_events", status="queued") == 3
    assert value(after, "broker_events", status="ignored") == 1
    assert value(after, "broker_events_log_size") == 4
    assert value(after, "broker_redis_up") == 1

    ctx, _ = make_context(settings, no_cluster)
    run_burst(ctx)
    drained = await scrape(client)
    assert value(drained, "broker_queue_depth", queue=settings.queue_name) == 0
    assert value(drained, "broker_queue_oldest_job_age_seconds", queue=settings.queue_name) == 0
    assert value(drained, "broker_events_processed_total", source="gitea", outcome="done") == 1
    assert value(drained, "broker_events_processed_total", outcome="done") == 3
    assert value(drained, "broker_processing_seconds_count", outcome="done") == 3
    assert value(drained, "broker_processing_seconds_bucket", source="gitea", outcome="done", le="+Inf") == 1
    assert value(drained, "broker_events", status="done") == 3


async def test_disabled_sender_and_unreachable_redis_are_counted(aiohttp_client, settings, tmp_path):
    no_drone = await aiohttp_client(create_app(settings.model_copy(update={"drone_secret": None})))
    before = await scrape(no_drone)
    body = payloads.drone_build()
    assert (
        await no_drone.post("/hooks/drone", data=body, headers=drone_headers(body, DRONE_SECRET))
    ).status == 503
    after = await scrape(no_drone)
    assert moved(before, after, "broker_webhook_rejections_total", source="drone", reason="disabled") == 1

    # A Redis nobody listens on and no spool: intake answers 503 and the scrape says Redis is down.
    unreachable = {"redis_url": "redis://127.0.0.1:1/0", "spool_max_bytes": 0, "data_dir": tmp_path / "down"}
    down = await aiohttp_client(create_app(settings.model_copy(update=unreachable)))
    push = payloads.gitea_push(after=payloads.fake_sha("no-redis"))
    assert await post_gitea(down, push) == 503
    broken = await scrape(down)
    assert moved(after, broken, "broker_webhook_rejections_total", source="gitea", reason="503") == 1
    assert moved(after, broken, "broker_redis_errors_total", where="intake") == 1
    assert value(broken, "broker_redis_up") == 0
    assert moved(after, broken, "broker_redis_errors_total", where="metrics") == 1


def failing(event: Event) -> Outcome:
    raise RuntimeError("Argo CD answered 503")


async def test_processing_outcomes_retry_and_dead_are_counted(client, settings):
    body = payloads.drone_build(status="success")
    assert (
        await client.post("/hooks/drone", data=body, headers=drone_headers(body, DRONE_SECRET))
    ).status == 202
    # Two attempts: the first is a retry, the second gives up.
    ctx, _ = make_context(settings.model_copy(update={"max_attempts": 2}), failing)
    run_burst(ctx)
    samples = await scrape(client)
    assert value(samples, "broker_events_processed_total", source="drone", outcome="retry") == 1
    assert value(samples, "broker_events_processed_total", source="drone", outcome="dead") == 1
    assert value(samples, "broker_processing_seconds_count", source="drone", outcome="dead") == 1
    assert value(samples, "broker_events", status="dead") == 1


async def test_worker_side_helpers_reach_the_web_scrape(client, sync_redis):
    metrics.record_writeback(sync_redis, "git", "written")
    metrics.record_writeback(sync_redis, "git", "written")
    metrics.record_writeback(sync_redis, "argocd", "conflict")
    metrics.record_sync(sync_redis, "sync", "requested")
    metrics.record_sync(sync_redis, "refresh", "error", via="rest")
    with sync_redis.pipeline() as pipe:
        metrics.inc(pipe, metrics.DELIVERIES, "deployment.succeeded", "succeeded")
        metrics.inc(pipe, metrics.DELIVERIES, "sync.started", "dead")
        pipe.execute()
    metrics.set_catalog_size(sync_redis, {"applications": 12, "imageupdaters": 2})
    metrics.set_catalog_size(sync_redis, {"applications": 11})  # a gauge: the last value wins
    pins = PinStore(sync_redis)
    for app, team in (("team-demo-web", "demo"), ("team-demo-api", "demo"), ("team-ops-tool", "ops")):
        pins.add(pin(app, "main", team))
    samples = await scrape(client)
    assert value(samples, "broker_writebacks_total", method="git", result="written") == 2
    assert value(samples, "broker_writebacks_total", method="argocd", result="conflict") == 1
    assert value(samples, "broker_syncs_total", mode="sync", via="k8s", result="requested") == 1
    assert value(samples, "broker_syncs_total", mode="refresh", via="rest", result="error") == 1
    assert (
        value(
            samples, "broker_notification_deliveries_total", kind="deployment.succeeded", result="succeeded"
        )
        == 1
    )
    assert value(samples, "broker_notification_deliveries_total", kind="sync.started", result="dead") == 1
    assert value(samples, "broker_catalog_size", kind="applications") == 11
    assert value(samples, "broker_catalog_size", kind="imageupdaters") == 2
    assert value(samples, "broker_pins", team="demo") == 2
    assert value(samples, "broker_pins", team="ops") == 1


async def test_histogram_buckets_are_cumulative(client, sync_redis):
    for seconds in (0.01, 0.3, 0.3, 7.0, 5000.0):
        with sync_redis.pipeline() as pipe:
            metrics.observe(pipe, metrics.PROCESSING_SECONDS, seconds, "harbor", "done")
            pipe.execute()
    samples = await scrape(client)
    bucket = {"source": "harbor", "outcome": "done"}
    assert value(samples, "broker_processing_seconds_bucket", le="0.05", **bucket) == 1
    assert value(samples, "broker_processing_seconds_bucket", le="0.5", **bucket) == 3
    assert value(samples, "broker_processing_seconds_bucket", le="10.0", **bucket) == 4
    assert value(samples, "broker_processing_seconds_bucket", le="1800.0", **bucket) == 4
    assert value(samples, "broker_processing_seconds_bucket", le="+Inf", **bucket) == 5
    assert value(samples, "broker_processing_seconds_count", **bucket) == 5
    assert abs(value(samples, "broker_processing_seconds_sum", **bucket) - 5007.61) < 1e-6


async def test_help_text_marks_redis_series_as_cluster_wide(client):
    text = await (await client.get("/metrics")).text()
    for name in (
        "broker_queue_depth",
        "broker_events_processed_total",
        "broker_catalog_size",
        "broker_workers",
    ):
        help_line = next(line for line in text.splitlines() if line.startswith(f"# HELP {name} "))
        assert "cluster-wide" in help_line
    assert "cluster-wide" not in next(
        line for line in text.splitlines() if line.startswith("# HELP broker_webhooks_received_total ")
    )


async def test_metrics_token_when_configured(aiohttp_client, settings):
    guarded = await aiohttp_client(
        create_app(settings.model_copy(update={"metrics_token": SecretStr("scrape-me")}))
    )
    assert (await guarded.get("/metrics")).status == 401
    assert (await guarded.get("/metrics", headers={"Authorization": "Bearer nope"})).status == 401
    assert value(await scrape(guarded, {"Authorization": "Bearer scrape-me"}), "broker_redis_up") == 1


async def test_notification_deliveries_are_counted_by_result(client, sync_redis, settings):
    nsettings = notify_settings(settings)
    receiver = Receiver().start()
    try:
        body = SubscriptionIn.model_validate({"target": receiver.url()})
        sub, _ = service.create(NotifyStore(sync_redis), NotifyConfig.from_settings(nsettings), "demo", body)
        receiver.plan("/hook", Reply(500))  # the first attempt fails, its retry succeeds
        emit(
            sync_redis,
            nsettings,
            [Notice(kind="deployment.succeeded", team="demo", app="shop", summary="live")],
        )

        def settled() -> bool:
            found, _ = NotifyStore(sync_redis).deliveries(sub.id)
            return bool(found) and found[0].status == "succeeded"

        work_until(sync_redis, [nsettings.notify_queue_name], settled)
    finally:
        receiver.stop()
    samples = await scrape(client)
    kind = {"kind": "deployment.succeeded"}
    assert value(samples, "broker_notification_deliveries_total", result="retrying", **kind) == 1
    assert value(samples, "broker_notification_deliveries_total", result="succeeded", **kind) == 1


async def test_gitops_write_backs_syncs_and_catalog_size_are_counted(
    client, emu, kube_config, gitops_settings, sync_redis
):
    """The GitOps core on kmock's emulator: one Harbor push writes back, syncs and is followed."""
    app = classic_app("demo", "hello", write_back="argocd")
    app["spec"]["source"]["helm"]["parameters"] = [
        {"name": "image.tag", "value": "1.4.1", "forceString": True}
    ]
    seed_all(emu, app)
    ctx, _ = worker_for(make_gitops(gitops_settings, sync_redis, kube_config, app))
    async with FakeController(emu):
        record = await run_event(ctx, harbor_event("demo", "hello", "1.4.3"))
    assert record.status == "done"
    samples = await scrape(client)
    assert value(samples, "broker_writebacks_total", method="argocd", result="written") == 1
    assert value(samples, "broker_syncs_total", mode="sync", via="k8s", result="requested") == 1
    assert value(samples, "broker_catalog_size", kind="applications") == 1
    assert value(samples, "broker_events_processed_total", source="harbor", outcome="done") == 1


def test_event_types_the_sender_chooses_are_bounded_as_labels() -> None:
    label = metrics.BoundedLabel(3)
    assert [label(t) for t in ("push", "tag", "issues", "wiki", "fork", "push")] == [
        "push",
        "tag",
        "issues",
        "other",
        "other",
        "push",
    ]
    # The intake's webhook counter takes its type label through one: within the bound, as it came.
    count, _ = metrics.answered("gitea", "bounded-label-test", "ignored")
    assert count is metrics.WEBHOOKS.labels("gitea", "bounded-label-test", "ignored")
    assert metrics.WEBHOOK_TYPE("bounded-label-test") == "bounded-label-test"

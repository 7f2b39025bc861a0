"""The ops page in a real headless Chromium (Debian's, driven by playwright) against a broker serving on
a real port in the test's event loop: live updates without reload, filters, detail view, deployment
timeline, replay (one and all), team scoping, queue/worker health. Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from rq import Queue

from broker.app import create_app
from broker.deployments import AppRollout, Deployment, DeploymentStore, new_id
from broker.queue import sync_redis as redis_client
from broker.team_tokens import TOKEN_KEY, token_digest
from broker.worker import no_cluster
from handlers.models import Action, BuildInfo, Event, Outcome
from tests import payloads
from tests.conftest import ADMIN_TOKEN, DRONE_SECRET, GITEA_SECRET, REDIS_URL
from tests.signing import drone_headers, gitea_headers
from tests.worker_support import make_context, run_burst

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TEAM_TOKEN = "bkt_demo-team-token"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def base_url(aiohttp_server, settings) -> str:
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def page(browser: Browser, base_url: str) -> AsyncIterator[Page]:
    """Depends on the server so it closes first: an open page holds an SSE stream the server would wait on."""
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The page must live within its Content-Security-Policy (no inline styles or scripts, no eval).
    page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))
    yield page
    await context.close()
    assert errors == [], f"the page raised: {errors}"


async def sign_in(page: Page, base_url: str, token: str = ADMIN_TOKEN, view: str = "") -> None:
    await page.goto(f"{base_url}/ui{view}")
    await page.get_by_test_id("token").fill(token)
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("principal")).to_be_visible()


async def wait_live(page: Page) -> None:
    await expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")


async def post_push(base_url: str, owner: str = "team-demo", seed: str = "x") -> str:
    body = payloads.gitea_push(owner=owner, after=payloads.fake_sha(f"{owner}-{seed}"))
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{base_url}/hooks/gitea", data=body, headers=gitea_headers(body, GITEA_SECRET)
        )
        assert resp.status == 202, await resp.text()
        return (await resp.json())["event_id"]


async def post_build(base_url: str, number: int = 12, status: str = "success") -> str:
    body = payloads.drone_build(status=status, number=number, build_id=1000 + number)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{base_url}/hooks/drone", data=body, headers=drone_headers(body, DRONE_SECRET)
        )
        assert resp.status == 202, await resp.text()
        return (await resp.json())["event_id"]


def row(page: Page, event_id: str):
    return page.locator(f'tr.row[data-id="{event_id}"]')


def failing(event: Event) -> Outcome:
    raise RuntimeError("Argo CD answered 503 Service Unavailable")


async def api_status(base_url: str, event_id: str) -> str:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(
            f"{base_url}/api/v1/events/{event_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        return (await resp.json())["status"]


async def test_new_events_appear_live_and_the_detail_shows_every_decision(page, base_url, settings):
    await post_push(base_url, seed="old")
    await sign_in(page, base_url)
    await wait_live(page)
    await page.evaluate("window.__noReload = true")

    event_id = await post_push(base_url, seed="new")
    await expect(row(page, event_id)).to_be_visible()
    await expect(page.locator("tr.row").first).to_have_attribute("data-id", event_id)  # newest first
    await expect(row(page, event_id)).to_have_attribute("data-status", "queued")

    ctx, _ = make_context(settings, no_cluster)
    run_burst(ctx)
    await expect(row(page, event_id)).to_have_attribute("data-status", "done")  # the change, pushed live

    await row(page, event_id).click()
    drawer = page.get_by_test_id("drawer")
    await expect(drawer.get_by_test_id("drawer-id")).to_have_text(event_id)
    actions = drawer.get_by_test_id("actions")
    await expect(actions.locator("tbody tr")).to_have_count(1)
    await expect(actions).to_contain_text("plan")
    await expect(actions).to_contain_text("skipped")
    await expect(drawer).to_contain_text("X-Gitea-Event")
    await expect(drawer.get_by_test_id("payload")).to_contain_text("refs/heads/main")
    await expect(drawer).to_contain_text("no cluster configured")
    await drawer.get_by_test_id("drawer-close").click()
    assert await page.evaluate("window.__noReload") is True

    ARTIFACTS.mkdir(exist_ok=True)
    for n in range(3):
        await post_push(base_url, owner="team-other", seed=f"shot-{n}")
    await post_build(base_url, number=41)
    await expect(page.locator("tr.row")).to_have_count(6)
    await page.screenshot(path=str(ARTIFACTS / "ui.png"), animations="disabled")


async def test_filters_narrow_the_log_and_the_live_tail(page, base_url):
    demo = [await post_push(base_url, seed=str(n)) for n in range(2)]
    other = await post_push(base_url, owner="team-other", seed="o")
    build = await post_build(base_url)
    await sign_in(page, base_url)
    await expect(page.locator("tr.row")).to_have_count(4)

    await page.get_by_test_id("filter-source").select_option("drone")
    await expect(page.locator("tr.row")).to_have_count(1)
    await expect(row(page, build)).to_be_visible()
    await wait_live(page)
    await post_push(base_url, seed="not-drone")  # does not match: stays off the table
    live_build = await post_build(base_url, number=13)
    await expect(row(page, live_build)).to_be_visible()
    await expect(page.locator("tr.row")).to_have_count(2)
    assert "source=drone" in page.url

    await page.reload()  # the filter lives in the URL, the token in the tab's session
    await expect(page.get_by_test_id("filter-source")).to_have_value("drone")
    await expect(page.locator("tr.row")).to_have_count(2)

    await page.get_by_test_id("clear-filters").click()
    await page.get_by_test_id("filter-repo").fill("team-other/hello")
    await page.get_by_test_id("filter-repo").press("Enter")
    await expect(page.locator("tr.row")).to_have_count(1)
    await expect(row(page, other)).to_be_visible()

    await page.get_by_test_id("filter-repo").fill("")
    await page.get_by_test_id("filter-repo").press("Enter")
    await page.get_by_test_id("filter-team").fill("team-demo")
    await page.get_by_test_id("filter-team").press("Enter")
    await page.get_by_test_id("filter-type").fill("push")
    await page.get_by_test_id("filter-type").press("Enter")
    await expect(page.locator("tr.row")).to_have_count(3)
    for event_id in demo:
        await expect(row(page, event_id)).to_be_visible()

    await page.get_by_test_id("filter-status").select_option("dead")
    await expect(page.locator("tr.row")).to_have_count(0)
    await expect(page.get_by_text("No events match these filters.")).to_be_visible()


async def test_paging_fetches_one_page_at_a_time(page, base_url, settings, sync_redis):
    """A big log is never fetched whole: 50 rows, then "Load more" asks for the next 50 by cursor."""
    ids = [await post_push(base_url, seed=f"p{n}") for n in range(60)]
    requested: list[str] = []
    page.on("request", lambda r: "/api/v1/events?" in r.url and requested.append(r.url))
    await sign_in(page, base_url)
    await expect(page.locator("tr.row")).to_have_count(50)
    await expect(page.locator("tr.row").first).to_have_attribute("data-id", ids[-1])
    assert len(requested) == 1 and "limit=50" in requested[0] and "cursor" not in requested[0]
    await page.get_by_test_id("load-more").click()
    await expect(page.locator("tr.row")).to_have_count(60)
    await expect(page.locator("tr.row").last).to_have_attribute("data-id", ids[0])
    assert len(requested) == 2 and f"cursor={ids[10]}" in requested[1]
    await expect(page.get_by_test_id("load-more")).to_be_hidden()


async def test_replay_from_the_page_requeues_dead_events(page, base_url, settings, sync_redis):
    dead = [await post_build(base_url, number=n) for n in (20, 21, 22)]
    ctx, _ = make_context(settings.model_copy(update={"max_attempts": 1}), failing)
    run_burst(ctx)
    assert [await api_status(base_url, i) for i in dead] == ["dead"] * 3

    await sign_in(page, base_url, view="#/dead")
    await wait_live(page)
    await expect(page.locator("tr.row")).to_have_count(3)
    await expect(page.get_by_test_id("strip")).to_contain_text("3 dead")
    await row(page, dead[0]).get_by_test_id("row-replay").click()
    await expect(row(page, dead[0])).to_have_count(0)  # it left the dead list, live
    assert await api_status(base_url, dead[0]) == "queued"
    queued = Queue(settings.queue_name, connection=sync_redis).job_ids
    assert any(job.startswith(f"event-{dead[0]}-") for job in queued)

    await page.get_by_test_id("replay-all").click()
    await page.get_by_test_id("replay-all-confirm").click()
    await expect(page.get_by_test_id("replay-progress")).to_contain_text("Replayed 2 of 2")
    await expect(page.get_by_test_id("replay-progress")).to_contain_text("finished")
    await expect(page.locator("tr.row")).to_have_count(0)
    assert [await api_status(base_url, i) for i in dead] == ["queued"] * 3

    # Once processed again (successfully this time) the events are done.
    run_burst(make_context(settings, no_cluster)[0])
    assert [await api_status(base_url, i) for i in dead] == ["done"] * 3


async def test_replay_button_in_the_detail_view(page, base_url, settings):
    event_id = await post_build(base_url, number=30)
    run_burst(make_context(settings.model_copy(update={"max_attempts": 1}), failing)[0])
    await sign_in(page, base_url, view=f"#/event/{event_id}")
    drawer = page.get_by_test_id("drawer")
    await expect(drawer.get_by_test_id("drawer-id")).to_have_text(event_id)
    await expect(drawer).to_contain_text("gave up after 1 attempts")
    await drawer.get_by_test_id("replay").click()
    await expect(drawer.get_by_test_id("replay-feedback")).to_contain_text("Re-queued")
    assert await api_status(base_url, event_id) == "queued"


async def test_a_team_token_sees_only_its_team(page, base_url, sync_redis):
    sync_redis.hset(TOKEN_KEY.format(digest=token_digest(TEAM_TOKEN)), mapping={"team": "demo"})
    mine = await post_push(base_url, seed="mine")
    theirs = await post_push(base_url, owner="team-other", seed="theirs")
    await sign_in(page, base_url, token=TEAM_TOKEN)
    await expect(page.get_by_test_id("principal")).to_have_text("team-demo")
    await expect(row(page, mine)).to_be_visible()
    await expect(page.locator("tr.row")).to_have_count(1)
    await expect(page.get_by_test_id("filter-team")).to_be_disabled()

    await wait_live(page)
    live_theirs = await post_push(base_url, owner="team-other", seed="live-theirs")
    live_mine = await post_push(base_url, seed="live-mine")
    await expect(row(page, live_mine)).to_be_visible()
    await expect(page.locator("tr.row")).to_have_count(2)
    assert await row(page, live_theirs).count() == 0

    await page.goto(f"{base_url}/ui#/event/{theirs}")  # a direct link to another team's event
    await expect(page.get_by_test_id("drawer")).to_contain_text("no such event")

    await page.goto(f"{base_url}/ui#/health")
    await expect(page.get_by_test_id("status-counts")).to_contain_text("2 events in the log")


async def test_a_wrong_token_is_refused_at_sign_in(page, base_url):
    await page.goto(f"{base_url}/ui")
    await page.get_by_test_id("token").fill("not-a-token")
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("login-error")).to_have_text("This token was refused.")
    await page.get_by_test_id("token").fill(ADMIN_TOKEN)
    await page.get_by_test_id("sign-in").click()
    await page.get_by_test_id("sign-out").click()
    await expect(page.get_by_test_id("sign-in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('broker.token')") is None


def deploying(event: Event) -> Outcome:
    """A processor that records a rollout as the GitOps core does: one deployment, two Applications."""
    store = DeploymentStore(redis_client(REDIS_URL), ttl_s=3600)
    deployment = Deployment(
        id=new_id(), team="demo", repo="team-demo/hello", commit=payloads.fake_sha("rollout"),
        commit_message="Bump hello to 1.4.2\n\nbody", pusher="alice", ref="refs/heads/main",
        build=BuildInfo(number=12, status="success", link="https://drone.example.com/team-demo/hello/12"),
        image="harbor.example.com/team-demo/hello", tag="1.4.2", digest=payloads.DIGEST,
        apps={
            "team-demo-hello": AppRollout(
                app="team-demo-hello", method="git", write="committed values",
                git_commit=payloads.fake_sha("wb"), sync_mode="sync", phase="Succeeded", health="Healthy",
                status="succeeded",
            ),
            "team-demo-hello-stg": AppRollout(
                app="team-demo-hello-stg", method="argocd", write="patched image.tag", sync_mode="sync",
                phase="Failed", health="Degraded", status="failed", message="CrashLoopBackOff",
            ),
        },
    )  # fmt: skip
    store.create(deployment, event_id=event.id)
    actions = [Action(kind="write-back", target="team-demo-hello", decision="git", result="written")]
    return Outcome(
        status="done", reason="updated 2 applications", actions=actions, deployment_id=deployment.id
    )


async def test_deployments_render_as_timelines(page, base_url, settings):
    await sign_in(page, base_url, view="#/deployments")
    await wait_live(page)
    event_id = await post_push(base_url, seed="rollout")
    run_burst(make_context(settings, deploying)[0])
    card = page.get_by_test_id("deployment")
    await expect(card).to_have_count(1)  # arrived live, through the event change that names it
    await expect(card).to_contain_text("Bump hello to 1.4.2")
    good = card.locator('[data-app="team-demo-hello"]')
    await expect(good.locator('[data-step="sync"]')).to_have_attribute("data-state", "ok")
    await expect(good.locator('[data-step="health"]')).to_have_attribute("data-state", "ok")
    bad = card.locator('[data-app="team-demo-hello-stg"]')
    await expect(bad.locator('[data-step="sync"]')).to_have_attribute("data-state", "failed")
    await expect(bad).to_contain_text("CrashLoopBackOff")
    await expect(card.locator('[data-step="build"]')).to_have_attribute("data-state", "ok")
    await page.screenshot(path=str(ARTIFACTS / "ui-deployments.png"), animations="disabled")

    await card.locator("button.chip").click()  # the deployment's event opens in the drawer
    drawer = page.get_by_test_id("drawer")
    await expect(drawer.get_by_test_id("drawer-id")).to_have_text(event_id)
    await expect(drawer.get_by_test_id("deployment")).to_contain_text("team-demo-hello-stg")
    await page.screenshot(path=str(ARTIFACTS / "ui-detail.png"), animations="disabled")


async def test_health_panel_shows_queue_depth_and_a_live_worker(page, base_url, settings):
    for n in range(2):
        await post_push(base_url, seed=f"h{n}")
    await sign_in(page, base_url, view="#/health")
    await expect(page.get_by_test_id("stat-depth")).to_contain_text("2")
    await expect(page.get_by_test_id("stat-workers")).to_contain_text("0")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "BROKER_KUBECONFIG")}
    env["BROKER_REDIS_URL"] = REDIS_URL
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "broker.cli", "worker", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # `broker worker` runs one process per queue role: at least the events worker must show up.
        await expect(page.get_by_test_id("stat-workers")).to_have_text(re.compile(r"^[1-9]"), timeout=20_000)
        await expect(page.get_by_test_id("stat-depth")).to_contain_text("0", timeout=20_000)
        await expect(page.get_by_test_id("workers").locator("tbody tr").first).to_be_visible()
        await expect(page.get_by_test_id("workers")).to_contain_text(settings.queue_name)
        await expect(page.get_by_test_id("status-counts").locator('[data-status="done"]')).to_contain_text(
            "2"
        )
        await page.screenshot(path=str(ARTIFACTS / "ui-health.png"), animations="disabled")
    finally:
        worker.terminate()
        await worker.wait()

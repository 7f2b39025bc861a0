"""The ops page's Pins view in a real headless Chromium against a broker on a real port and real Redis:
pins seeded with PinStore are listed with their values, the event that set a pin opens in the drawer,
Unpin removes the pin (from the table and from Redis), a refused unpin shows on its button, and a team
token sees only its team's pins."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.async_api import Page, expect

from broker.pins import PinStore
from broker.team_tokens import TOKEN_KEY, token_digest
from handlers.rollback import Pin
from tests import test_ui_page as ui
from tests.test_ui_page import ARTIFACTS, TEAM_TOKEN, post_push, sign_in

# The page tests' fixtures, registered here by name: headless Chromium, the broker on a real port, and a page
# that fails the test on any page error or Content-Security-Policy violation.
browser, base_url, page = ui.browser, ui.base_url, ui.page

PINNED_AT = datetime(2026, 3, 1, 9, 30, 5, tzinfo=UTC)
APPLIED = "sha256:" + "d" * 64
FOUND = "1.3.2@sha256:" + "a" * 64
HOSTILE = 'changed outside the broker from <img src=x data-x="1"> to <b>1.3.2</b>'


def make_pin(app: str, alias: str, team: str | None, event_id: str, **extra) -> Pin:
    values = {
        "image": "registry.example.com/demo/hello",
        "strategy": "semver",
        "applied": "1.4.0",
        "found": "1.3.2",
        "reason": "rolled back from 1.4.0 to 1.3.2",
        "pinned_at": PINNED_AT,
        **extra,
    }
    return Pin(app=app, alias=alias, team=team, event_id=event_id, **values)


def local(when: datetime) -> str:
    """What the page shows for a time: the browser's local time (the test's too: same machine)."""
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def pin_row(page: Page, key: str):
    return page.locator(f'[data-testid="pin"][data-key="{key}"]')


async def test_pins_are_listed_open_their_event_and_unpin(page, base_url, sync_redis):
    event_id = await post_push(base_url, seed="pinned")
    store = PinStore(sync_redis)
    web = store.add(make_pin("team-demo-hello", "web", "demo", event_id))
    tool = store.add(
        make_pin(
            "team-ops-tool",
            "tool",
            "ops",
            "01JPINEVENT000000000000000",
            image="harbor.example.com/ops/tool",
            strategy="digest",
            applied=APPLIED,
            found=FOUND,
            reason=HOSTILE,
            pinned_at=datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC),
        )
    )

    await sign_in(page, base_url)
    await page.locator('a.nav-link[data-view="pins"]').click()
    await expect(page).to_have_title("Pins · webhook broker")
    await expect(page.locator('a.nav-link[data-view="pins"]')).to_have_class("nav-link active")
    await expect(page.get_by_text("unpinning lets the next push update them again")).to_be_visible()
    rows = page.get_by_test_id("pin")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_have_attribute("data-key", web.key)  # by Application and alias
    await expect(page.get_by_test_id("pins-empty")).to_be_hidden()

    first = pin_row(page, "team-demo-hello/web")
    await expect(first.get_by_test_id("pin-key")).to_have_text("team-demo-hello/web")
    await expect(first.get_by_test_id("pin-team")).to_have_text("team-demo")
    await expect(first.get_by_test_id("pin-image")).to_have_text("registry.example.com/demo/hello")
    await expect(first.get_by_test_id("pin-values")).to_have_text("1.4.0 → 1.3.2")
    await expect(first.get_by_test_id("pin-values")).to_have_attribute(
        "title", "strategy: semver\napplied: 1.4.0\nfound: 1.3.2"
    )
    await expect(first.get_by_test_id("pin-at")).to_have_text(local(PINNED_AT))
    await expect(first.get_by_test_id("pin-at").locator("time")).to_have_attribute(
        "datetime", "2026-03-01T09:30:05Z"
    )
    await expect(first.get_by_test_id("pin-reason")).to_have_text("rolled back from 1.4.0 to 1.3.2")
    await expect(first.get_by_test_id("pin-event")).to_have_text(event_id[-8:])

    second = pin_row(page, "team-ops-tool/tool")
    await expect(second.get_by_test_id("pin-team")).to_have_text("team-ops")
    await expect(second.get_by_test_id("pin-image")).to_have_text("harbor.example.com/ops/tool")
    values = second.get_by_test_id("pin-values")  # digests cut short, whole in the title
    await expect(values).to_have_text(f"sha256:{'d' * 12} → 1.3.2@sha256:{'a' * 12}")
    await expect(values).to_have_attribute("title", f"strategy: digest\napplied: {APPLIED}\nfound: {FOUND}")
    await expect(second.get_by_test_id("pin-at")).to_have_text(local(tool.pinned_at))
    await expect(second.get_by_test_id("pin-reason")).to_have_text(HOSTILE)  # text, not markup
    assert await second.locator("img, b").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "ui-pins.png"), animations="disabled")

    await first.get_by_test_id("pin-event").click()  # the event that set the pin, in the drawer
    drawer = page.get_by_test_id("drawer")
    await expect(drawer.get_by_test_id("drawer-id")).to_have_text(event_id)
    await expect(drawer).to_contain_text("team-demo/hello")
    await drawer.get_by_test_id("drawer-close").click()

    await first.get_by_test_id("unpin").click()
    await expect(first).to_have_count(0)
    assert store.get("team-demo-hello", "web") is None
    assert store.released("team-demo-hello", "web") == "1.4.0"
    await expect(rows).to_have_count(1)
    await expect(second).to_be_visible()
    assert store.get("team-ops-tool", "tool") == tool
    await expect(page.get_by_test_id("pins-empty")).to_be_hidden()

    await second.get_by_test_id("unpin").click()
    await expect(rows).to_have_count(0)
    assert store.get("team-ops-tool", "tool") is None
    await expect(page.get_by_test_id("pins-empty")).to_have_text(
        "No pins: no workload was found rolled back by hand."
    )
    await expect(page.get_by_test_id("pins-empty")).to_be_visible()

    await page.reload()  # the view lives in the URL; the pins stay gone
    await expect(page.get_by_test_id("pins-empty")).to_be_visible()
    await expect(rows).to_have_count(0)


async def test_a_refused_unpin_shows_on_its_button(page, base_url, sync_redis):
    store = PinStore(sync_redis)
    store.add(make_pin("team-demo-hello", "web", "demo", "01JPINEVENT000000000000000"))
    await sign_in(page, base_url, view="#/pins")
    row = pin_row(page, "team-demo-hello/web")
    await expect(row).to_be_visible()
    store.remove("team-demo-hello", "web")  # a worker cleared it (rolled forward) while the page was open

    button = row.get_by_test_id("unpin")
    await button.click()
    await expect(button).to_have_text("Retry unpin")
    await expect(button).to_have_attribute("title", "no such pin")
    await expect(button).to_be_enabled()
    await expect(row).to_be_visible()


async def test_a_team_token_sees_only_its_teams_pins(page, base_url, sync_redis):
    sync_redis.hset(TOKEN_KEY.format(digest=token_digest(TEAM_TOKEN)), mapping={"team": "demo"})
    store = PinStore(sync_redis)
    store.add(make_pin("team-demo-hello", "web", "demo", "01JPINEVENT000000000000000"))
    store.add(make_pin("team-ops-tool", "tool", "ops", "01JPINEVENT000000000000001"))
    await sign_in(page, base_url, token=TEAM_TOKEN, view="#/pins")
    await expect(page.get_by_test_id("principal")).to_have_text("team-demo")
    await expect(pin_row(page, "team-demo-hello/web")).to_be_visible()
    await expect(page.get_by_test_id("pin")).to_have_count(1)

    await pin_row(page, "team-demo-hello/web").get_by_test_id("unpin").click()
    await expect(page.get_by_test_id("pins-empty")).to_be_visible()
    assert store.get("team-demo-hello", "web") is None
    assert store.get("team-ops-tool", "tool") is not None

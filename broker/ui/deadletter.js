// Dead letters: events that used up their retries or failed permanently, a Replay button per event and
// "Replay all" with progress. Replayed events leave the list as the live tail reports them queued.

import { api, liveTail, replay } from "./api.js";
import { button, h, message } from "./dom.js";
import { liveBadge } from "./events.js";
import { EventTable } from "./table.js";

const PAGE = 100;
const PARALLEL = 4;

function replayButton(ev) {
  const btn = button("Replay", async () => {
    btn.disabled = true;
    btn.textContent = "Replaying…";
    try {
      await replay(ev.id);
      btn.textContent = "Queued ✓";
    } catch (err) {
      btn.textContent = "Retry replay";
      btn.title = err.message;
      btn.disabled = false;
    }
  }, { kind: "small", testid: "row-replay" });
  return btn;
}

export function deadLetterView(ctx, root) {
  const table = new EventTable({ onOpen: ctx.openEvent, rowAction: replayButton });
  table.empty.textContent = "No dead events. Everything the broker accepted was processed.";
  const status = h("div", { class: "status-line" });
  const live = liveBadge();
  const more = button("Load more", () => loadPage(), { testid: "dead-more" });
  const bar = h("div", { class: "progress-bar" }, h("div", { class: "progress-fill" }));
  const progressText = h("span", { "data-testid": "replay-progress" });
  const progress = h("div", { class: "progress", hidden: true }, bar, progressText);
  const confirmBox = h("div", { class: "confirm", hidden: true });
  const replayAll = button("Replay all", () => askConfirm(), { kind: "primary", testid: "replay-all" });
  let cursor = null;
  let stopRun = false;
  let alive = true;

  root.replaceChildren(
    h("div", { class: "view-head" }, h("h2", {}, "Dead letters"),
      h("p", { class: "muted" }, "Events that failed permanently or used up their retries. Fix the cause, then replay them.")),
    h("div", { class: "toolbar" }, h("div", { class: "filters" }, replayAll, confirmBox, progress), live.el),
    status, table.el, h("div", { class: "pager" }, more));

  async function loadPage() {
    more.disabled = true;
    try {
      const page = await api("/api/v1/events", { params: { status: "dead", limit: PAGE, cursor } });
      if (!alive) return;
      table.append(page.items);
      cursor = page.next_cursor;
      table.hasMore = Boolean(cursor) && page.items.length > 0;
    } catch (err) {
      status.replaceChildren(message("error", `Could not load dead events: ${err.message}`));
    } finally {
      more.disabled = false;
      more.hidden = !table.hasMore;
    }
  }

  async function askConfirm() {
    let total = table.size;
    try {
      total = (await api("/api/v1/ops/health")).events.by_status.dead;
    } catch {
      // fall back to what is loaded
    }
    confirmBox.replaceChildren(
      h("span", {}, `Replay all ${total} dead event${total === 1 ? "" : "s"}?`),
      button("Replay them", () => runAll(total), { kind: "danger small", testid: "replay-all-confirm" }),
      button("Cancel", () => { confirmBox.hidden = true; }, { kind: "ghost small" }));
    confirmBox.hidden = false;
  }

  // Walks the dead index page by page with the cursor (replayed ids leave it; the cursor is an id bound,
  // so nothing is skipped), replaying a few at a time.
  async function runAll(total) {
    confirmBox.hidden = true;
    replayAll.disabled = true;
    progress.hidden = false;
    stopRun = false;
    const stopBtn = button("Stop", () => { stopRun = true; }, { kind: "ghost small" });
    progress.append(stopBtn);
    let done = 0;
    let refused = 0;
    let runCursor = null;
    const show = () => {
      const of = Math.max(total, done + refused);
      bar.firstChild.style.width = `${of ? Math.round(((done + refused) / of) * 100) : 100}%`;
      progressText.textContent = `Replayed ${done} of ${of}${refused ? ` · ${refused} refused` : ""}`;
    };
    show();
    try {
      do {
        const page = await api("/api/v1/events", { params: { status: "dead", limit: PAGE, cursor: runCursor } });
        const ids = page.items.map((ev) => ev.id);
        runCursor = page.items.length ? page.next_cursor : null;
        while (ids.length && !stopRun) {
          const batch = ids.splice(0, PARALLEL);
          const results = await Promise.allSettled(batch.map((id) => replay(id)));
          for (const r of results) r.status === "fulfilled" ? (done += 1) : (refused += 1);
          show();
        }
      } while (runCursor && !stopRun && alive);
      progressText.textContent += stopRun ? " · stopped" : " · finished";
    } catch (err) {
      status.replaceChildren(message("error", `Replay all stopped: ${err.message}`));
    } finally {
      stopBtn.remove();
      replayAll.disabled = false;
    }
  }

  const stopLive = liveTail({}, {
    onState: live.set,
    onChange(ev) {
      ctx.eventChanged(ev);
      if (ev.status === "dead") table.upsert(ev);
      else table.remove(ev.id);
    },
  });
  loadPage();
  return {
    destroy() {
      alive = false;
      stopRun = true;
      stopLive();
      table.destroy();
    },
  };
}

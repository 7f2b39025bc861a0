// Queue and worker health, refreshed every few seconds while the view is open, plus the header strip.

import { api } from "./api.js";
import { fmtDuration, fmtTime, h, message, pill, STATUSES } from "./dom.js";

const REFRESH_MS = 5000;
const STRIP_REFRESH_MS = 10000;

function stat(label, value, tone = "", testid = null) {
  return h("div", { class: `stat ${tone}`.trim(), "data-testid": testid },
    h("div", { class: "stat-value" }, value), h("div", { class: "stat-label" }, label));
}

function queuesTable(queues) {
  return h("div", { class: "table-wrap" }, h("table", { class: "grid", "data-testid": "queues" },
    h("thead", {}, h("tr", {}, ["Queue", "Waiting", "Oldest job", "Scheduled retries", "Running", "Failed (rq)"].map((c) => h("th", {}, c)))),
    h("tbody", {}, queues.map((q) => h("tr", { dataset: { queue: q.name } },
      h("td", { class: "mono" }, q.name),
      h("td", { class: "num" }, String(q.depth)),
      h("td", { class: `num ${q.oldest_age_s > 60 ? "warn-text" : ""}` }, q.depth ? fmtDuration(q.oldest_age_s) : "—"),
      h("td", { class: "num" }, String(q.scheduled)),
      h("td", { class: "num" }, String(q.started)),
      h("td", { class: `num ${q.failed ? "bad-text" : ""}` }, String(q.failed)))))));
}

function workersTable(workers) {
  if (!workers.length) return message("error", "No worker is running: events are accepted but nothing processes them. Start `broker worker`.");
  return h("div", { class: "table-wrap" }, h("table", { class: "grid", "data-testid": "workers" },
    h("thead", {}, h("tr", {}, ["Worker", "Host", "State", "Queues", "Last heartbeat", "Jobs ok / failed", "Up since"].map((c) => h("th", {}, c)))),
    h("tbody", {}, workers.map((w) => h("tr", {},
      h("td", { class: "mono clip", title: w.name }, w.name),
      h("td", { class: "mono" }, `${w.hostname || "?"}${w.pid ? `:${w.pid}` : ""}`),
      h("td", {}, pill(w.state, "pill-soft")),
      h("td", { class: "mono" }, w.queues.join(", ")),
      h("td", { class: w.heartbeat_age_s > 120 ? "warn-text" : "" }, `${fmtDuration(w.heartbeat_age_s)} ago`),
      h("td", { class: "num" }, `${w.successful_jobs} / ${w.failed_jobs}`),
      h("td", { class: "nowrap" }, fmtTime(w.birth)))))));
}

function statusBars(byStatus, total) {
  const max = Math.max(1, ...Object.values(byStatus));
  return h("div", { class: "bars", "data-testid": "status-counts" },
    STATUSES.map((s) => h("div", { class: "bar-row", dataset: { status: s } },
      h("span", { class: "bar-label" }, pill(s)),
      h("span", { class: "bar-track" }, h("span", { class: `bar-fill fill-${s}`, style: { width: `${Math.round(((byStatus[s] || 0) / max) * 100)}%` } })),
      h("span", { class: "num bar-count" }, String(byStatus[s] || 0)))),
    h("div", { class: "muted small" }, `${total} events in the log`));
}

function render(root, data) {
  const mainQueue = data.queues[0] || { depth: 0, oldest_age_s: null };
  const dead = data.events.by_status.dead || 0;
  root.replaceChildren(
    h("div", { class: "stats" },
      stat("Redis", data.redis.ok ? `ok · ${data.redis.latency_ms} ms` : "down", data.redis.ok ? "good" : "bad", "stat-redis"),
      stat("Workers", String(data.workers.length), data.workers.length ? "good" : "bad", "stat-workers"),
      stat("Waiting jobs", String(data.queues.reduce((n, q) => n + q.depth, 0)), "", "stat-depth"),
      stat("Oldest waiting", mainQueue.depth ? fmtDuration(mainQueue.oldest_age_s) : "—", mainQueue.oldest_age_s > 60 ? "warn" : ""),
      stat("Dead events", String(dead), dead ? "bad" : "good", "stat-dead")),
    h("div", { class: "columns" },
      h("section", { class: "panel" }, h("h3", { class: "panel-title" }, "Queues"), queuesTable(data.queues)),
      h("section", { class: "panel" }, h("h3", { class: "panel-title" }, data.scope.admin ? "Events by status" : `Events of team-${data.scope.team}`),
        statusBars(data.events.by_status, data.events.total))),
    h("section", { class: "panel" }, h("h3", { class: "panel-title" }, "Workers"), workersTable(data.workers)),
    h("p", { class: "muted small" }, `Checked ${fmtTime(data.checked_at)} · refreshes every ${REFRESH_MS / 1000} s`));
}

export function healthView(ctx, root) {
  const body = h("div", { "data-testid": "health" }, h("p", { class: "muted" }, "Loading…"));
  root.replaceChildren(
    h("div", { class: "view-head" }, h("h2", {}, "Queue and worker health"),
      h("p", { class: "muted" }, "Read from Redis: the same on every web replica.")), body);
  let timer = null;
  const tick = async () => {
    try {
      const data = await api("/api/v1/ops/health");
      render(body, data);
      ctx.healthRead(data);
    } catch (err) {
      body.replaceChildren(message("error", `Health unavailable: ${err.message}`));
    }
    timer = setTimeout(tick, REFRESH_MS);
  };
  tick();
  return { destroy: () => clearTimeout(timer) };
}

// The always-visible summary in the top bar; the health view hands it each reading it makes too.
export function healthStrip(el) {
  // When the health view last handed in a reading: while it polls, the strip skips its own request.
  let lastShown = 0;
  const paint = (data) => {
    const waiting = data.queues.reduce((n, q) => n + q.depth, 0);
    const dead = data.events.by_status.dead || 0;
    el.dataset.state = !data.workers.length || dead ? "warn" : "ok";
    el.replaceChildren(
      h("span", { class: "dot" }), `Redis ok · ${data.workers.length} worker${data.workers.length === 1 ? "" : "s"} · ${waiting} waiting · `,
      h("a", { href: "#/dead", class: dead ? "bad-text" : "" }, `${dead} dead`));
  };
  const show = (data) => {
    lastShown = Date.now();
    paint(data);
  };
  const tick = async () => {
    if (Date.now() - lastShown < STRIP_REFRESH_MS) return;
    try {
      paint(await api("/api/v1/ops/health"));
    } catch {
      el.dataset.state = "bad";
      el.replaceChildren(h("span", { class: "dot" }), "broker unreachable");
    }
  };
  tick();
  const timer = setInterval(tick, STRIP_REFRESH_MS);
  return { show, stop: () => clearInterval(timer) };
}

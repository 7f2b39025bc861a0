// The event detail drawer: what came in (headers that matter, parsed payload), what the broker decided
// and did (every action), the deployment it belongs to, and a Replay button.

import { api, replay } from "./api.js";
import { renderDeployment } from "./deployments.js";
import {
  append, button, externalLink, fmtTime, h, message, pill, section, shortDigest, sourceBadge, teamLabel,
} from "./dom.js";
import { jsonTree } from "./json.js";

const SECRET_HEADER = /authorization|signature|token|secret|cookie/i;
const FINAL = new Set(["done", "ignored", "failed", "dead"]);

function overview(ev) {
  const rows = [
    ["Received", fmtTime(ev.received_at)],
    ["Updated", fmtTime(ev.updated_at)],
    ["Delivery", ev.delivery_id],
    ["Team", ev.team ? teamLabel(ev.team) : null],
    ["Repository", ev.repo],
    ["Ref", ev.ref],
    ["Commit", ev.commit],
    ["Image", ev.image],
    ["Tag", ev.tag],
    ["Digest", ev.digest ? h("span", { title: ev.digest }, shortDigest(ev.digest)) : null],
    ["Build", ev.build ? [
      ev.build.number !== null && ev.build.number !== undefined ? `#${ev.build.number} ` : "",
      ev.build.status || "",
      ev.build.link ? [" · ", externalLink(ev.build.link, "open")] : "",
    ] : null],
    ["Attempts", String(ev.attempts ?? 0)],
    ["Reason", ev.reason],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  return h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", { class: "mono" }, v)]));
}

function detailValue(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail !== "object") return String(detail);
  const text = JSON.stringify(detail);
  if (text.length <= 80) return h("code", {}, text);
  return h("details", { class: "inline" }, h("summary", {}, `${text.slice(0, 60)}…`), jsonTree(detail, 1));
}

function actionsTable(actions) {
  if (!actions || actions.length === 0) return h("p", { class: "muted" }, "No decisions recorded yet.");
  return h("div", { class: "table-wrap" }, h("table", { class: "grid actions", "data-testid": "actions" },
    h("thead", {}, h("tr", {}, ["Kind", "Target", "Decision", "Result", "Detail", "At"].map((c) => h("th", {}, c)))),
    h("tbody", {}, actions.map((a) => h("tr", {},
      h("td", { class: "mono" }, a.kind),
      h("td", { class: "mono clip", title: a.target || "" }, a.target),
      h("td", {}, a.decision),
      h("td", {}, a.result ? pill(a.result, "pill-soft") : "—"),
      h("td", { class: "detail" }, detailValue(a.detail)),
      h("td", { class: "nowrap" }, fmtTime(a.at)))))));
}

function headersList(headers) {
  const entries = Object.entries(headers || {}).filter(([name]) => !SECRET_HEADER.test(name));
  if (entries.length === 0) return h("p", { class: "muted" }, "No headers kept for this event.");
  return h("dl", { class: "facts headers" }, entries.map(([k, v]) => [h("dt", { class: "mono" }, k), h("dd", { class: "mono" }, v)]));
}

export class Drawer {
  constructor(ctx) {
    this.ctx = ctx;
    this.id = null;
    this.body = h("div", { class: "drawer-body" });
    this.el = h("aside", { class: "drawer", "aria-hidden": "true", "data-testid": "drawer" }, this.body);
    this.scrim = h("div", { class: "scrim", hidden: true, on: { click: () => this.close() } });
    document.addEventListener("keydown", (e) => e.key === "Escape" && this.close());
  }

  async open(id) {
    this.id = id;
    this.el.classList.add("open");
    this.el.setAttribute("aria-hidden", "false");
    this.scrim.hidden = false;
    this.body.replaceChildren(h("p", { class: "muted pad" }, "Loading…"));
    await this.load();
  }

  close() {
    this.id = null;
    this.el.classList.remove("open");
    this.el.setAttribute("aria-hidden", "true");
    this.scrim.hidden = true;
  }

  // The live tail said this event changed: re-read it (the tail carries no payload or headers).
  changed(ev) {
    if (ev.id !== this.id) return;
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.load(), 150);
  }

  async load() {
    const id = this.id;
    try {
      const ev = await api(`/api/v1/events/${encodeURIComponent(id)}`);
      if (id === this.id) this.render(ev);
    } catch (err) {
      if (id === this.id) this.body.replaceChildren(this.head(null, id), message("error", err.message));
    }
  }

  head(ev, id) {
    return h("header", { class: "drawer-head" },
      h("div", {},
        h("div", { class: "drawer-title" }, ev ? [sourceBadge(ev.source), " ", h("span", {}, ev.type)] : "Event"),
        h("div", { class: "mono muted small", "data-testid": "drawer-id" }, id)),
      h("div", { class: "drawer-tools" }, ev ? pill(ev.status) : null,
        button("✕", () => this.close(), { kind: "ghost icon", title: "Close (Esc)", testid: "drawer-close" })));
  }

  render(ev) {
    const feedback = h("span", { class: "muted small", "data-testid": "replay-feedback" });
    const replayBtn = button("Replay", async () => {
      replayBtn.disabled = true;
      try {
        const answer = await replay(ev.id);
        feedback.textContent = `Re-queued (${answer.status}).`;
      } catch (err) {
        feedback.textContent = `Replay refused: ${err.message}`;
        replayBtn.disabled = false;
      }
    }, { kind: "primary", testid: "replay", disabled: !FINAL.has(ev.status),
      title: FINAL.has(ev.status) ? "Queue this event again with fresh attempts" : "Wait until it has finished" });
    const deployment = h("div", {});
    this.body.replaceChildren();
    append(this.body, [
      this.head(ev, ev.id),
      h("div", { class: "drawer-actions" }, replayBtn, feedback),
      section("Overview", overview(ev)),
      section(`Decisions and actions (${(ev.actions || []).length})`, actionsTable(ev.actions)),
      ev.deployment_id ? section("Deployment", deployment) : null,
      section("Headers", headersList(ev.headers)),
      section("Payload", h("div", { class: "json", "data-testid": "payload" }, jsonTree(ev.payload || {}, 2))),
    ]);
    if (ev.deployment_id) this.loadDeployment(ev.deployment_id, deployment);
  }

  async loadDeployment(id, into) {
    into.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      into.replaceChildren(renderDeployment(await api(`/api/v1/deployments/${encodeURIComponent(id)}`), this.ctx));
    } catch (err) {
      into.replaceChildren(message("warn", `Deployment ${id}: ${err.message}`));
    }
  }
}

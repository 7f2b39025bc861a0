// The event table shared by the log and the dead-letter list: rows keyed by event id, newest first,
// updated in place when the live tail reports a change.

import { eventSubject, h, pill, refreshTimes, sourceBadge, teamLabel, timeAgo } from "./dom.js";

const COLUMNS = ["Received", "Source", "Type", "Team", "Repository", "Subject", "Status", "Tries", "Reason"];

export class EventTable {
  constructor({ onOpen, rowAction = null }) {
    this.onOpen = onOpen;
    this.rowAction = rowAction;
    this.rows = new Map();
    this.hasMore = false;
    const heads = [...COLUMNS, ...(rowAction ? [""] : [])].map((c) => h("th", { scope: "col" }, c));
    this.body = h("tbody");
    this.empty = h("div", { class: "empty", hidden: true }, "No events match these filters.");
    this.el = h("div", { class: "table-wrap" },
      h("table", { class: "grid events", "data-testid": "event-table" }, h("thead", {}, h("tr", {}, heads)), this.body),
      this.empty);
    this.timer = setInterval(() => refreshTimes(this.body), 15000);
  }

  destroy() {
    clearInterval(this.timer);
  }

  get size() {
    return this.rows.size;
  }

  clear() {
    this.rows.clear();
    this.body.replaceChildren();
    this.syncEmpty();
  }

  append(items) {
    for (const ev of items) {
      if (this.rows.has(ev.id)) continue;
      const row = this.row(ev);
      this.rows.set(ev.id, row);
      this.body.append(row);
    }
    this.syncEmpty();
  }

  // A change from the live tail: replace the row, or insert it where its id sorts (ids are time-ordered).
  // An event older than everything loaded, with more pages to come, is left for "load more".
  upsert(ev) {
    const old = this.rows.get(ev.id);
    const row = this.row(ev, old ? "flash" : "arrived");
    if (old) {
      old.replaceWith(row);
    } else {
      const after = [...this.rows.keys()].find((id) => id < ev.id);
      if (after) this.body.insertBefore(row, this.rows.get(after));
      else if (this.hasMore) return;
      else this.body.append(row);
    }
    this.rows.set(ev.id, row);
    this.syncEmpty();
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.remove();
    this.rows.delete(id);
    this.syncEmpty();
  }

  syncEmpty() {
    this.empty.hidden = this.rows.size > 0;
  }

  row(ev, effect = "") {
    const open = () => this.onOpen(ev.id);
    const cells = [
      h("td", { class: "nowrap" }, timeAgo(ev.received_at)),
      h("td", {}, sourceBadge(ev.source)),
      h("td", { class: "mono" }, ev.type),
      h("td", { class: "nowrap" }, teamLabel(ev.team)),
      h("td", { class: "mono clip", title: ev.repo || "" }, ev.repo || "—"),
      h("td", { class: "mono clip", title: eventSubject(ev) }, eventSubject(ev) || "—"),
      h("td", {}, pill(ev.status)),
      h("td", { class: "num" }, String(ev.attempts ?? 0)),
      h("td", { class: "clip reason", title: ev.reason || "" }, ev.reason || ""),
    ];
    if (this.rowAction) cells.push(h("td", { class: "nowrap", on: { click: (e) => e.stopPropagation() } }, this.rowAction(ev)));
    return h("tr", {
      class: `row ${effect}`.trim(),
      tabindex: "0",
      dataset: { id: ev.id, status: ev.status },
      on: { click: open, keydown: (e) => e.key === "Enter" && open() },
    }, cells);
  }
}

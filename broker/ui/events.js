// The event log: filters, newest first, live over SSE, server-side paging with the cursor.

import { api, liveTail } from "./api.js";
import { button, EVENT_TYPES, h, message, SOURCES, STATUSES } from "./dom.js";
import { EventTable } from "./table.js";

export const FILTERS = ["source", "type", "team", "repo", "status"];
const PAGE = 50;

export function normaliseTeam(team) {
  return team && team.startsWith("team-") ? team.slice(5) : team;
}

export function matches(ev, filters) {
  return FILTERS.every((field) => {
    const wanted = field === "team" ? normaliseTeam(filters[field]) : filters[field];
    return !wanted || ev[field] === wanted;
  });
}

function select(name, label, options, value, onChange) {
  return h("label", { class: "field" }, h("span", {}, label),
    h("select", { name, "data-testid": `filter-${name}`, on: { change: onChange } },
      h("option", { value: "" }, "any"),
      options.map((opt) => h("option", { value: opt, selected: opt === value }, opt))));
}

function textField(name, label, value, placeholder, onChange, extra = {}) {
  return h("label", { class: "field" }, h("span", {}, label),
    h("input", {
      name, type: "search", value: value || "", placeholder, autocomplete: "off", spellcheck: "false",
      "data-testid": `filter-${name}`, on: { change: onChange }, ...extra,
    }));
}

export function liveBadge() {
  const text = h("span", {}, "connecting");
  const el = h("span", { class: "live", "data-testid": "live", "data-state": "connecting", title: "Live updates over SSE" },
    h("span", { class: "dot" }), text);
  const labels = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Offline" };
  return { el, set(state) { el.dataset.state = state; text.textContent = labels[state] || state; } };
}

export function eventsView(ctx, root, params) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || ""]));
  if (!ctx.me.admin) filters.team = ctx.me.team;
  const table = new EventTable({ onOpen: ctx.openEvent });
  const live = liveBadge();
  const status = h("div", { class: "status-line" });
  const more = button("Load more", () => loadPage(generation), { testid: "load-more" });
  const count = h("span", { class: "muted", "data-testid": "event-count" });
  let cursor = null;
  let generation = 0;
  let buffered = null; // changes that arrive while the first page loads
  let stopLive = null;

  const changed = (e) => {
    filters[e.target.name] = e.target.value.trim();
    ctx.setQuery("events", filters);
    reload();
  };
  const teamField = ctx.me.admin
    ? textField("team", "Team", filters.team, "any team", changed)
    : textField("team", "Team", `team-${ctx.me.team}`, "", changed, { disabled: true, title: "a team token sees only its team" });
  const typeField = textField("type", "Type", filters.type, "any type", changed, { list: "event-types" });
  const toolbar = h("div", { class: "toolbar" },
    h("div", { class: "filters" },
      select("source", "Source", SOURCES, filters.source, changed),
      typeField,
      h("datalist", { id: "event-types" }, EVENT_TYPES.map((t) => h("option", { value: t }))),
      teamField,
      textField("repo", "Repository", filters.repo, "owner/name", changed),
      select("status", "Status", STATUSES, filters.status, changed),
      button("Clear", () => {
        for (const f of FILTERS) if (f !== "team" || ctx.me.admin) filters[f] = "";
        ctx.setQuery("events", filters);
        ctx.remount();
      }, { kind: "ghost", testid: "clear-filters" })),
    live.el);

  root.replaceChildren(
    h("div", { class: "view-head" }, h("h2", {}, "Event log"),
      h("p", { class: "muted" }, "Every delivery the broker answered, newest first. Click a row for its decisions and payload.")),
    toolbar, status, table.el, h("div", { class: "pager" }, count, more));

  function onChange(ev) {
    if (buffered) {
      buffered.push(ev);
      return;
    }
    if (matches(ev, filters)) table.upsert(ev);
    else table.remove(ev.id);
    showCount();
    ctx.eventChanged(ev);
  }

  function showCount() {
    count.textContent = `${table.size} event${table.size === 1 ? "" : "s"} shown${table.hasMore ? " · more below" : ""}`;
  }

  async function loadPage(gen) {
    more.disabled = true;
    status.replaceChildren();
    try {
      const page = await api("/api/v1/events", { params: { ...filters, limit: PAGE, cursor } });
      if (gen !== generation) return;
      table.append(page.items);
      cursor = page.next_cursor;
      table.hasMore = Boolean(cursor) && page.items.length > 0;
    } catch (err) {
      if (gen !== generation) return;
      status.replaceChildren(message("error", `Could not load events: ${err.message}`));
    } finally {
      if (gen === generation) {
        more.disabled = false;
        more.hidden = !table.hasMore;
        const pending = buffered || [];
        buffered = null;
        pending.forEach(onChange);
        showCount();
      }
    }
  }

  function reload() {
    generation += 1;
    cursor = null;
    table.clear();
    table.hasMore = false;
    buffered = [];
    if (stopLive) stopLive();
    // The tail is not narrowed by status, so an event that leaves the filtered status leaves the table.
    const { status: _status, ...tailFilters } = filters;
    stopLive = liveTail(tailFilters, { onChange, onState: live.set });
    return loadPage(generation);
  }

  reload();
  return {
    destroy() {
      generation += 1;
      if (stopLive) stopLive();
      table.destroy();
    },
  };
}

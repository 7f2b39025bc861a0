// Deployment records as timelines: commit → build → image, then per Application write-back → sync → health.
// The list follows the live tail: an event change that names a deployment re-reads that record.

import { api, liveTail } from "./api.js";
import { button, externalLink, fmtTime, h, message, pill, shortDigest, shortSha, teamLabel, timeAgo } from "./dom.js";
import { liveBadge, normaliseTeam } from "./events.js";

const PAGE = 20;
const BUILD_FAILED = new Set(["failure", "killed", "error", "declined"]);

function step(label, state, value, sub) {
  return h("li", { class: `step step-${state}`, "data-step": label.toLowerCase(), "data-state": state },
    h("span", { class: "step-dot", "aria-hidden": "true" }),
    h("div", { class: "step-body" },
      h("div", { class: "step-label" }, label),
      h("div", { class: "step-value mono" }, value || "—"),
      sub ? h("div", { class: "step-sub" }, sub) : null));
}

function buildStep(build) {
  if (!build) return step("Build", "none", null);
  const state = build.status === "success" ? "ok" : BUILD_FAILED.has(build.status) ? "failed" : "pending";
  const label = [build.number !== null && build.number !== undefined ? `#${build.number}` : "", build.status || ""].join(" ").trim();
  return step("Build", state, build.link ? externalLink(build.link, label) : label);
}

function imageStep(dep) {
  if (!dep.image && !dep.tag) return step("Image", "none", null);
  const name = dep.tag ? `${dep.image || ""}:${dep.tag}` : dep.image;
  return step("Image", "ok", name, dep.digest ? shortDigest(dep.digest) : null);
}

function writeStep(app) {
  if (app.status === "unchanged") return step("Write-back", "skipped", app.write || "already current", app.method);
  if (!app.write && !app.method) return step("Write-back", app.status === "failed" ? "failed" : "pending", null);
  const failed = app.status === "failed" && !app.sync_mode;
  return step("Write-back", failed ? "failed" : "ok", app.write || app.method,
    [app.method, app.git_commit ? `commit ${shortSha(app.git_commit)}` : null].filter(Boolean).join(" · "));
}

function syncStep(app) {
  const phase = app.phase || "";
  if (app.sync_mode === "none") return step("Sync", "skipped", "not synced", app.sync_reason);
  if (/^(Succeeded)$/i.test(phase)) return step("Sync", "ok", phase, app.sync_mode);
  if (/^(Failed|Error)$/i.test(phase)) return step("Sync", "failed", phase, app.sync_reason);
  if (app.sync_mode || phase) return step("Sync", app.status === "failed" ? "failed" : "pending", phase || app.sync_mode, app.sync_reason);
  return step("Sync", "pending", null);
}

function healthStep(app) {
  const health = app.health || "";
  if (/^Healthy$/i.test(health)) return step("Health", "ok", health);
  if (/^(Degraded|Missing)$/i.test(health)) return step("Health", "failed", health);
  if (health) return step("Health", /^Suspended$/i.test(health) ? "warn" : "pending", health);
  return step("Health", app.status === "unchanged" ? "skipped" : "pending", null);
}

export function renderDeployment(dep, ctx) {
  const apps = Object.values(dep.apps || {});
  const ref = dep.ref ? String(dep.ref).replace(/^refs\/(heads|tags)\//, "") : "";
  const commit = dep.commit ? (dep.commit_url ? externalLink(dep.commit_url, shortSha(dep.commit)) : shortSha(dep.commit)) : null;
  return h("article", { class: "deploy", "data-testid": "deployment", dataset: { id: dep.id } },
    h("header", { class: "deploy-head" },
      pill(dep.status, "dep"),
      h("strong", { class: "mono" }, dep.repo || dep.image || "deployment"),
      ref ? h("span", { class: "muted mono" }, `@ ${ref}`) : null,
      h("span", { class: "muted" }, teamLabel(dep.team)),
      h("span", { class: "spacer" }),
      h("span", { class: "muted small", title: fmtTime(dep.created_at) }, "started ", timeAgo(dep.created_at))),
    dep.commit_message ? h("p", { class: "commit-msg" }, String(dep.commit_message).split("\n")[0],
      dep.pusher ? h("span", { class: "muted" }, ` — ${dep.pusher}`) : null) : null,
    h("div", { class: "app-row change-row" }, h("div", { class: "app-name muted" }, "change"),
      h("ol", { class: "timeline" },
        step("Commit", dep.commit ? "ok" : "none", commit),
        buildStep(dep.build),
        imageStep(dep))),
    h("div", { class: "apps" },
      apps.length === 0
        ? h("div", { class: "app-row" }, h("div", { class: "app-name muted" }, "no Application yet"),
          h("ol", { class: "timeline" }, step("Write-back", "pending", null), step("Sync", "pending", null), step("Health", "pending", null)))
        : apps.map((app) => h("div", { class: "app-row", dataset: { app: app.app } },
          h("div", { class: "app-name" }, h("span", { class: "mono clip", title: app.app }, app.app), pill(app.status, "pill-soft dep")),
          h("ol", { class: "timeline" }, writeStep(app), syncStep(app), healthStep(app)),
          app.message ? h("p", { class: "app-msg muted" }, app.message) : null))),
    dep.events && dep.events.length
      ? h("footer", { class: "deploy-events" }, h("span", { class: "muted small" }, "Events"),
        dep.events.map((id) => h("button", { type: "button", class: "chip mono", on: { click: () => ctx.openEvent(id) } }, id.slice(-8))))
      : null);
}

export function deploymentsView(ctx, root, params) {
  const filters = { app: params.get("app") || "", team: ctx.me.admin ? params.get("team") || "" : "" };
  const list = h("div", { class: "deploy-list", "data-testid": "deployments" });
  const status = h("div", { class: "status-line" });
  const more = button("Load more", () => load(), { testid: "deploy-more" });
  const live = liveBadge();
  const cards = new Map();
  let cursor = null;
  let alive = true;

  const changed = (e) => {
    filters[e.target.name] = e.target.value.trim();
    ctx.setQuery("deployments", filters);
    ctx.remount();
  };
  const field = (name, label, placeholder) => h("label", { class: "field" }, h("span", {}, label),
    h("input", { name, type: "search", value: filters[name], placeholder, on: { change: changed } }));
  root.replaceChildren(
    h("div", { class: "view-head" }, h("h2", {}, "Deployments"),
      h("p", { class: "muted" }, "One record per rollout: commit → build → image → write-back → sync → health.")),
    h("div", { class: "toolbar" }, h("div", { class: "filters" }, field("app", "Application", "any app"),
      ctx.me.admin ? field("team", "Team", "any team") : null), live.el),
    status, list, h("div", { class: "pager" }, more));

  function place(dep) {
    const card = renderDeployment(dep, ctx);
    const old = cards.get(dep.id);
    if (old) old.replaceWith(card);
    else {
      const after = [...cards.keys()].find((id) => id < dep.id);
      if (after) list.insertBefore(card, cards.get(after));
      else if (!cursor) list.append(card);
      else return;
    }
    cards.set(dep.id, card);
  }

  async function load() {
    more.disabled = true;
    try {
      const page = await api("/api/v1/deployments", { params: { ...filters, limit: PAGE, cursor } });
      if (!alive) return;
      cursor = page.next_cursor;
      page.items.forEach(place);
      if (cards.size === 0) status.replaceChildren(message("info", "No deployment recorded yet."));
      else status.replaceChildren();
    } catch (err) {
      if (alive) status.replaceChildren(message("error", `Could not load deployments: ${err.message}`));
    } finally {
      more.disabled = false;
      more.hidden = !cursor;
    }
  }

  const refreshing = new Set();
  async function refresh(id) {
    if (refreshing.has(id)) return;
    refreshing.add(id);
    try {
      const dep = await api(`/api/v1/deployments/${encodeURIComponent(id)}`);
      const wanted = (!filters.app || (dep.apps && filters.app in dep.apps)) &&
        (!filters.team || dep.team === normaliseTeam(filters.team));
      if (alive && wanted) {
        place(dep);
        status.replaceChildren();
      }
    } catch {
      // gone or not ours: nothing to show
    } finally {
      refreshing.delete(id);
    }
  }

  const stop = liveTail({}, {
    onState: live.set,
    onChange(ev) {
      ctx.eventChanged(ev);
      if (ev.deployment_id) setTimeout(() => refresh(ev.deployment_id), 100);
    },
  });
  load();
  return {
    destroy() {
      alive = false;
      stop();
    },
  };
}

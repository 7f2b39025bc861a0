// The ops page: token login, a hash router over the views, the event drawer and the health strip.

import { api, ApiError, auth, signals } from "./api.js";
import { deadLetterView } from "./deadletter.js";
import { deploymentsView } from "./deployments.js";
import { Drawer } from "./detail.js";
import { h } from "./dom.js";
import { eventsView } from "./events.js";
import { healthStrip, healthView } from "./health.js";
import { pinsView } from "./pins.js";

const VIEWS = {
  events: ["Events", eventsView],
  deployments: ["Deployments", deploymentsView],
  pins: ["Pins", pinsView],
  dead: ["Dead letters", deadLetterView],
  health: ["Health", healthView],
};

const root = document.getElementById("app");
let session = null; // { ctx, drawer, main, nav, view, name, strip }

function parseHash() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, arg] = path.split("/");
  return { name: name || "events", arg: arg ? decodeURIComponent(arg) : null, params: new URLSearchParams(query) };
}

function logo() {
  return h("img", { src: "/ui/logo.svg", alt: "", class: "logo", width: "28", height: "28" });
}

function teardown() {
  if (!session) return;
  if (session.view) session.view.destroy();
  session.strip.stop();
  window.removeEventListener("hashchange", route);
  session = null;
}

function showLogin(note = "") {
  teardown();
  const input = h("input", {
    type: "password", name: "token", id: "token", required: true, autocomplete: "current-password",
    placeholder: "paste a token", "data-testid": "token",
  });
  const error = h("div", { class: "login-error", role: "alert", "data-testid": "login-error" }, note);
  const submit = h("button", { type: "submit", class: "btn primary wide", "data-testid": "sign-in" }, "Sign in");
  const form = h("form", {
    class: "login-card",
    on: {
      async submit(e) {
        e.preventDefault();
        const token = input.value.trim();
        submit.disabled = true;
        error.textContent = "";
        try {
          const me = await api("/api/v1/ops/me", { token });
          auth.save(token);
          showApp(me);
        } catch (err) {
          error.textContent = err.status === 401 ? "This token was refused." : err.message;
          submit.disabled = false;
        }
      },
    },
  },
  h("div", { class: "login-brand" }, logo(), h("span", {}, "webhook broker")),
  h("h1", {}, "Sign in to the ops console"),
  h("p", { class: "muted" }, "Use the admin token (BROKER_ADMIN_TOKEN) or a team token. It is kept in this browser tab only."),
  h("label", { for: "token", class: "label" }, "Token"), input, submit, error);
  root.replaceChildren(h("div", { class: "login" }, form));
  input.focus();
}

function showApp(me) {
  teardown();
  const main = h("main", { class: "main", id: "main" });
  const strip = h("div", { class: "strip", "data-testid": "strip" }, "…");
  const nav = h("nav", { class: "nav" }, Object.entries(VIEWS).map(([name, [title]]) =>
    h("a", { href: `#/${name}`, class: "nav-link", dataset: { view: name } }, title)));
  const who = me.admin ? "admin" : `team-${me.team}`;
  const signOut = h("button", {
    type: "button", class: "btn ghost on-dark", "data-testid": "sign-out",
    on: { click: () => { auth.clear(); location.hash = ""; showLogin(); } },
  }, "Sign out");
  const ctx = {
    me,
    openEvent: (id) => session && session.drawer.open(id),
    eventChanged: (ev) => session && session.drawer.changed(ev),
    setQuery(name, filters) {
      const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v)).toString();
      history.replaceState(null, "", `#/${name}${query ? `?${query}` : ""}`);
    },
    remount: () => route(),
    healthRead: (data) => session && session.strip.show(data),
  };
  const drawer = new Drawer(ctx);
  root.replaceChildren(
    h("div", { class: "shell" },
      h("header", { class: "topbar" },
        h("a", { class: "brand", href: "#/events" }, logo(), h("span", {}, "webhook broker")),
        nav, h("div", { class: "spacer" }), strip,
        h("span", { class: `who ${me.admin ? "admin" : "team"}`, "data-testid": "principal" }, who), signOut),
      main),
    drawer.scrim, drawer.el);
  session = { ctx, drawer, main, nav, view: null, name: null, strip: healthStrip(strip) };
  window.addEventListener("hashchange", route);
  route();
}

function mount(name, params) {
  if (session.view) session.view.destroy();
  session.drawer.close();
  session.name = name;
  for (const link of session.nav.children) link.classList.toggle("active", link.dataset.view === name);
  document.title = `${VIEWS[name][0]} · webhook broker`;
  session.view = VIEWS[name][1](session.ctx, session.main, params);
}

function route() {
  if (!session) return;
  const { name, arg, params } = parseHash();
  if (name === "event" && arg) {
    if (!session.view) mount("events", new URLSearchParams());
    session.drawer.open(arg);
    return;
  }
  mount(VIEWS[name] ? name : "events", params);
}

async function boot() {
  signals.addEventListener("unauthorized", () => session && showLogin("The broker refused the token; sign in again."));
  if (!auth.token) return showLogin();
  try {
    showApp(await api("/api/v1/ops/me"));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) auth.clear();
    showLogin(err.status === 401 ? "The saved token was refused; sign in again." : err.message);
  }
}

boot();

// DOM building from data without HTML parsing: every value becomes a text node or an attribute value.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style") Object.assign(el.style, value); // CSSOM, which the CSP allows (attributes it does not)
    else if (key === "on") for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    else if (key === "href") el.setAttribute("href", safeHref(value));
    else if (key.startsWith("on")) throw new Error("event handlers go in the `on` prop");
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Links from payloads (build links, commit URLs) are shown only when they are plain http(s).
export function safeHref(url) {
  if (typeof url === "string" && url.startsWith("#")) return url;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : "#";
  } catch {
    return "#";
  }
}

export function externalLink(url, label) {
  const href = safeHref(url);
  if (href === "#") return label;
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label);
}

export const STATUSES = ["queued", "processing", "done", "ignored", "failed", "dead"];
export const SOURCES = ["gitea", "drone", "harbor"];
export const EVENT_TYPES = [
  "push", "tag", "branch_delete", "tag_delete", "create", "delete", "test", "build",
  "artifact_push", "artifact_delete", "scan",
];

export function pill(status, extra = "") {
  return h("span", { class: `pill pill-${cssToken(status)} ${extra}`.trim() }, status || "unknown");
}

export function sourceBadge(source) {
  return h("span", { class: `src src-${cssToken(source)}` }, source || "?");
}

export function cssToken(value) {
  return String(value || "none").toLowerCase().replace(/[^a-z0-9_-]/g, "_");
}

export function shortSha(sha) {
  return sha ? String(sha).slice(0, 8) : "";
}

export function shortDigest(digest) {
  if (!digest) return "";
  const [algo, hex] = String(digest).split(":");
  return hex ? `${algo}:${hex.slice(0, 12)}` : String(digest).slice(0, 16);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

export function relTime(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - new Date(iso).getTime()) / 1000;
  if (Number.isNaN(seconds)) return "";
  if (seconds < 5) return "just now";
  return `${fmtDuration(seconds).split(" ")[0]} ago`;
}

// A <time> that keeps its "3m ago" current (see refreshTimes) and shows the exact time on hover.
export function timeAgo(iso) {
  return h("time", { datetime: iso || "", title: fmtTime(iso), class: "ago" }, relTime(iso));
}

export function refreshTimes(root) {
  for (const el of root.querySelectorAll("time.ago")) el.textContent = relTime(el.getAttribute("datetime"));
}

// One line saying what an event is about: image, ref + commit, or build.
export function eventSubject(ev) {
  if (ev.image) {
    const ref = ev.tag ? `:${ev.tag}` : ev.digest ? `@${shortDigest(ev.digest)}` : "";
    return `${ev.image}${ref}`;
  }
  const parts = [];
  if (ev.ref) parts.push(String(ev.ref).replace(/^refs\/(heads|tags)\//, ""));
  if (ev.commit) parts.push(shortSha(ev.commit));
  if (ev.build && ev.build.number !== null && ev.build.number !== undefined) {
    parts.push(`build #${ev.build.number}${ev.build.status ? ` ${ev.build.status}` : ""}`);
  }
  return parts.join(" · ");
}

export function teamLabel(team) {
  return team ? `team-${team}` : "—";
}

export function message(kind, text) {
  return h("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function button(label, onClick, { kind = "", title, disabled, testid } = {}) {
  return h("button", {
    type: "button", class: `btn ${kind}`.trim(), title, disabled, "data-testid": testid, on: { click: onClick },
  }, label);
}

export function section(title, ...body) {
  return h("section", { class: "panel" }, h("h3", { class: "panel-title" }, title), ...body);
}

// A collapsible JSON viewer built from text nodes: payloads are untrusted input.

import { h } from "./dom.js";

const MAX_CHILDREN = 500;

function scalar(value) {
  if (value === null) return h("span", { class: "jt-null" }, "null");
  if (typeof value === "string") return h("span", { class: "jt-str" }, JSON.stringify(value));
  if (typeof value === "number") return h("span", { class: "jt-num" }, String(value));
  if (typeof value === "boolean") return h("span", { class: "jt-bool" }, String(value));
  return h("span", {}, String(value));
}

function entries(value) {
  return Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
}

function node(key, value, depth, openDepth) {
  const label = key === null ? null : h("span", { class: "jt-key" }, key);
  const colon = label ? [label, h("span", { class: "jt-colon" }, ": ")] : null;
  if (value === null || typeof value !== "object") {
    return h("div", { class: "jt-row" }, colon, scalar(value));
  }
  const items = entries(value);
  const brackets = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  if (items.length === 0) return h("div", { class: "jt-row" }, colon, h("span", { class: "jt-brace" }, brackets.join("")));
  const summary = h("summary", {}, colon, h("span", { class: "jt-brace" }, brackets[0]),
    h("span", { class: "jt-count" }, ` ${items.length} ${Array.isArray(value) ? "items" : "keys"}`));
  const children = h("div", { class: "jt-children" });
  const fill = () => {
    if (children.childElementCount) return;
    for (const [k, v] of items.slice(0, MAX_CHILDREN)) children.append(node(k, v, depth + 1, openDepth));
    if (items.length > MAX_CHILDREN) children.append(h("div", { class: "muted" }, `… ${items.length - MAX_CHILDREN} more`));
  };
  const details = h("details", { class: "jt-node" }, summary, children, h("span", { class: "jt-brace" }, brackets[1]));
  // Children are built on first open, so a payload with thousands of entries costs nothing until looked at.
  details.addEventListener("toggle", () => details.open && fill());
  if (depth < openDepth) {
    details.open = true;
    fill();
  }
  return details;
}

export function jsonTree(value, openDepth = 1) {
  return h("div", { class: "jt" }, node(null, value, 0, openDepth));
}

// Rollback pins: images of Applications the broker leaves alone since it found them rolled back by hand.
// One row per Application and image alias, the event that set the pin, and an Unpin button.

import { api } from "./api.js";
import { button, fmtTime, h, message, shortDigest, teamLabel } from "./dom.js";

const COLUMNS = ["Application / alias", "Team", "Image", "Applied → found", "Pinned at", "Reason", "Event", ""];

// A value as applied or found: a tag, a digest or tag@digest. Digests are cut short (the title has them whole).
const shortValue = (value) => String(value || "?").replace(/\b[a-z0-9]+:[0-9a-f]{16,}\b/g, (digest) => shortDigest(digest));

const unpin = (pin) =>
  api(`/api/v1/pins/${encodeURIComponent(pin.app)}/${encodeURIComponent(pin.alias)}`, { method: "DELETE" });

export function pinsView(ctx, root) {
  const body = h("tbody");
  const empty = h("div", { class: "empty", hidden: true, "data-testid": "pins-empty" },
    "No pins: no workload was found rolled back by hand.");
  const status = h("div", { class: "status-line" });
  const rows = new Map();
  let alive = true;

  root.replaceChildren(
    h("div", { class: "view-head" }, h("h2", {}, "Pins"),
      h("p", { class: "muted" },
        "The broker leaves these images where someone rolled them back; unpinning lets the next push update them again.")),
    status,
    h("div", { class: "table-wrap" },
      h("table", { class: "grid", "data-testid": "pins-table" },
        h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))), body),
      empty));

  const syncEmpty = () => { empty.hidden = rows.size > 0; };

  function unpinButton(pin) {
    const btn = button("Unpin", async () => {
      btn.disabled = true;
      btn.textContent = "Unpinning…";
      try {
        await unpin(pin);
        if (!alive) return;
        rows.get(pin.key)?.remove();
        rows.delete(pin.key);
        syncEmpty();
      } catch (err) {
        btn.textContent = "Retry unpin";
        btn.title = err.message;
        btn.disabled = false;
      }
    }, { kind: "small", testid: "unpin", title: `Let the next push update ${pin.image} in ${pin.app} again` });
    return btn;
  }

  function row(pin) {
    const event = pin.event_id
      ? h("button", {
        type: "button", class: "chip mono", title: `Open event ${pin.event_id}`, "data-testid": "pin-event",
        on: { click: () => ctx.openEvent(pin.event_id) },
      }, pin.event_id.slice(-8))
      : "—";
    return h("tr", { "data-testid": "pin", dataset: { key: pin.key } },
      h("td", { class: "mono clip", title: pin.key, "data-testid": "pin-key" }, pin.key),
      h("td", { class: "nowrap", "data-testid": "pin-team" }, teamLabel(pin.team)),
      h("td", { class: "mono clip", title: pin.image, "data-testid": "pin-image" }, pin.image),
      h("td", {
        class: "mono", "data-testid": "pin-values",
        title: `strategy: ${pin.strategy}\napplied: ${pin.applied}\nfound: ${pin.found}`,
      }, `${shortValue(pin.applied)} → ${shortValue(pin.found)}`),
      h("td", { class: "nowrap", "data-testid": "pin-at" }, h("time", { datetime: pin.pinned_at || "" }, fmtTime(pin.pinned_at))),
      h("td", { class: "clip", title: pin.reason || "", "data-testid": "pin-reason" }, pin.reason || ""),
      h("td", { class: "nowrap" }, event),
      h("td", { class: "nowrap" }, unpinButton(pin)));
  }

  async function load() {
    try {
      const data = await api("/api/v1/pins");
      if (!alive) return;
      for (const pin of data.items) {
        const tr = row(pin);
        rows.set(pin.key, tr);
        body.append(tr);
      }
      syncEmpty();
    } catch (err) {
      if (alive) status.replaceChildren(message("error", `Could not load pins: ${err.message}`));
    }
  }

  load();
  return {
    destroy() {
      alive = false;
    },
  };
}

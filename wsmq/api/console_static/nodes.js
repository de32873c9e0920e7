// The nodes page: every live node with its connections, subscriptions, uptime and version.

import { api } from "./api.js";
import { h, replace, num, duration, stat } from "./ui.js";

export function mount(container) {
  const cards = h("div", { class: "cards" });
  const tbody = h("tbody");
  const empty = h("p", { class: "empty muted", hidden: true }, "No node has announced itself yet.");
  container.append(
    h("div", { class: "page-head" }, h("h1", {}, "Nodes")),
    h("p", { class: "muted lead" }, "Every node with the API on announces itself every few seconds; one that stops announcing leaves the list within three intervals."),
    cards,
    h("div", { class: "table-wrap" },
      h("table", { class: "data nodes-table" },
        h("caption", { class: "visually-hidden" }, "Live nodes"),
        h("thead", {}, h("tr", {},
          ["Node", "Host", "PID", "WebSocket URL", "Version", "Uptime"].map((c) => h("th", { scope: "col" }, c)),
          h("th", { scope: "col", class: "num" }, "Connections"),
          h("th", { scope: "col", class: "num" }, "Subscriptions"),
          h("th", { scope: "col", class: "num" }, "Last seen"))),
        tbody)),
    empty);

  return {
    async refresh() {
      const { nodes } = await api.nodes();
      const now = Date.now() / 1000;
      const conns = nodes.reduce((s, n) => s + n.connections, 0);
      const subs = nodes.reduce((s, n) => s + n.subscriptions, 0);
      const versions = [...new Set(nodes.map((n) => n.version))];
      replace(cards,
        stat("Nodes", num(nodes.length)),
        stat("Connections", num(conns)),
        stat("Subscriptions", num(subs)),
        stat("Versions", versions.join(", ") || "—", versions.length > 1 ? "mixed versions (rolling upgrade?)" : ""));
      empty.hidden = nodes.length > 0;
      replace(tbody, nodes.map((n) => h("tr", { "data-node": n.id },
        h("th", { scope: "row", "data-label": "Node" }, h("code", {}, n.id)),
        h("td", { "data-label": "Host" }, n.host),
        h("td", { "data-label": "PID" }, String(n.pid)),
        h("td", { "data-label": "WebSocket URL" }, n.url ? h("code", {}, n.url) : "—"),
        h("td", { "data-label": "Version" }, n.version),
        h("td", { "data-label": "Uptime" }, duration(n.uptime)),
        h("td", { class: "num", "data-label": "Connections", "data-field": "connections" }, num(n.connections)),
        h("td", { class: "num", "data-label": "Subscriptions", "data-field": "subscriptions" }, num(n.subscriptions)),
        h("td", { class: "num", "data-label": "Last seen" }, `${duration(now - n.announced)} ago`))));
    },
  };
}

// The queues page: overview cards, a sortable, filterable table, and "create queue".

import { api, q } from "./api.js";
import { h, replace, say, num, duration, rate, sparkline, field, keepFocus, stat } from "./ui.js";

// Depth samples (total messages) the console took itself, per queue: [[epoch s, total], ...].
// The API's rates are sent/received counts; depth over time exists only where it was watched.
const DEPTH_WINDOW_S = 15 * 60;
export const depthHistory = new Map();

export function recordDepth(queue, now = Date.now() / 1000) {
  const points = depthHistory.get(queue.name) || [];
  points.push([now, queue.total]);
  while (points.length && points[0][0] < now - DEPTH_WINDOW_S) points.shift();
  depthHistory.set(queue.name, points);
}

const COLUMNS = [
  { key: "name", label: "Name", text: true },
  { key: "visible", label: "Visible" },
  { key: "hidden", label: "In flight / delayed" },
  { key: "total", label: "Total" },
  { key: "traffic", label: "Received / sent", sortKey: (x) => x.totalrecv },
  { key: "rate", label: "Rate (sent)", sortKey: (x) => (x.rate ? x.rate.sentPerMinute : -1) },
  { key: "oldestAge", label: "Oldest", sortKey: (x) => x.oldestAge ?? -1 },
  { key: "dlq", label: "Dead letters", sortKey: (x) => (x.deadLetterQueue ? x.deadLetterQueue.depth ?? 0 : -1) },
  { key: "trend", label: "Depth trend", sortable: false },
];

const sort = { key: "name", dir: 1 };
let filterText = "";

export function mount(container, ctx) {
  let queues = [];
  const cards = h("div", { class: "cards", "aria-label": "Overview" });
  const tbody = h("tbody");
  const headRow = h("tr");
  const empty = h("p", { class: "empty muted", hidden: true });
  const filter = h("input", {
    id: "queue-filter", type: "search", placeholder: "Filter by name", autocomplete: "off",
    value: filterText,
  });
  filter.addEventListener("input", () => { filterText = filter.value; keepFocus(render); });

  const createBtn = ctx.canAdmin
    ? h("button", { type: "button", class: "btn btn-primary", "aria-expanded": "false", "aria-controls": "create-panel" }, "New queue")
    : null;
  const createPanel = ctx.canAdmin ? createForm(ctx, () => togglePanel(false)) : null;
  function togglePanel(open) {
    createPanel.hidden = !open;
    createBtn.setAttribute("aria-expanded", String(open));
    if (open) createPanel.querySelector("input").focus();
    else createBtn.focus();
  }
  if (createBtn) createBtn.addEventListener("click", () => togglePanel(createPanel.hidden));

  container.append(
    h("div", { class: "page-head" },
      h("h1", {}, "Queues"),
      h("div", { class: "page-actions" },
        h("label", { for: "queue-filter", class: "visually-hidden" }, "Filter queues"), filter,
        createBtn)),
    createPanel,
    cards,
    h("div", { class: "table-wrap" },
      h("table", { class: "data queues-table", id: "queues-table" },
        h("caption", { class: "visually-hidden" }, "Queues; select a column header to sort"),
        h("thead", {}, headRow), tbody)),
    empty,
  );

  function header() {
    replace(headRow, COLUMNS.map((c) => {
      const numeric = !c.text && c.key !== "dlq" && c.key !== "trend";
      if (c.sortable === false) return h("th", { scope: "col" }, c.label);
      const active = sort.key === c.key;
      const btn = h("button", { type: "button", class: "sort", "data-focus-id": `sort:${c.key}` }, c.label,
        h("span", { class: "sort-ind", "aria-hidden": "true" }, active ? (sort.dir > 0 ? "▲" : "▼") : ""));
      btn.addEventListener("click", () => {
        sort.dir = sort.key === c.key ? -sort.dir : (c.text ? 1 : -1);
        sort.key = c.key;
        keepFocus(render);
      });
      return h("th", {
        scope: "col", "data-col": c.key, class: numeric ? "num" : null,
        "aria-sort": active ? (sort.dir > 0 ? "ascending" : "descending") : "none",
      }, btn);
    }));
  }

  function render() {
    header();
    const col = COLUMNS.find((c) => c.key === sort.key);
    const keyOf = col.sortKey || ((x) => x[col.key]);
    const shown = queues
      .filter((x) => x.name.toLowerCase().includes(filterText.trim().toLowerCase()))
      .sort((a, b) => {
        const va = keyOf(a), vb = keyOf(b);
        const c = typeof va === "string" ? va.localeCompare(vb) : (va ?? -1) - (vb ?? -1);
        return c * sort.dir || a.name.localeCompare(b.name);
      });
    replace(tbody, shown.map(row));
    empty.hidden = shown.length > 0;
    empty.textContent = queues.length ? "No queue matches the filter." : "No queues yet.";

    const total = queues.reduce((s, x) => s + x.total, 0);
    const hidden = queues.reduce((s, x) => s + x.hidden, 0);
    const dead = queues.filter((x) => x.deadLetterFor.length).reduce((s, x) => s + x.total, 0);
    const sent = queues.reduce((s, x) => s + (x.rate ? x.rate.sentPerMinute : 0), 0);
    replace(cards,
      stat("Queues", num(queues.length)),
      stat("Messages", num(total), `${num(total - hidden)} visible`),
      stat("In flight / delayed", num(hidden)),
      stat("Dead letters", num(dead), dead ? "waiting in dead-letter queues" : "none", { tone: dead ? "warn" : null }),
      stat("Sent", rate(sent), "all queues, last minute"));
  }

  return {
    async refresh() {
      const data = await api.queues();
      queues = data.queues;
      const now = Date.now() / 1000;
      for (const x of queues) recordDepth(x, now);
      keepFocus(render);
    },
  };
}

function row(x) {
  const dlq = x.deadLetterQueue;
  let dlqCell = h("span", { class: "muted" }, "—");
  if (dlq) {
    const depth = dlq.depth ?? 0;
    dlqCell = h("a", {
      href: `#/queues/${q(dlq.name)}`, "data-focus-id": `dlq:${x.name}`, class: `badge ${depth ? "badge-warn" : "badge-ok"}`,
      title: `Dead-letter queue ${dlq.name}: ${depth} message(s)`,
    }, `${dlq.name} · ${dlq.depth === null ? "missing" : num(depth)}`);
  } else if (x.deadLetterFor.length) {
    dlqCell = h("span", { class: "badge badge-info", title: `Dead-letter queue of ${x.deadLetterFor.join(", ")}` }, "is a DLQ");
  }
  const depth = (depthHistory.get(x.name) || []).map((p) => p[1]);
  return h("tr", { "data-queue": x.name },
    h("th", { scope: "row", "data-label": "Name" },
      h("a", { href: `#/queues/${q(x.name)}`, "data-focus-id": `q:${x.name}` }, x.name),
      x.groupMembers ? h("span", {
        class: "badge badge-info group-badge", title: `A group: copies each message into ${x.groupMembers.join(", ")}`,
      }, `group · ${x.groupMembers.length}`) : null),
    h("td", { class: "num", "data-label": "Visible", "data-field": "visible" }, num(x.visible)),
    h("td", { class: "num", "data-label": "In flight / delayed", "data-field": "hidden" }, num(x.hidden)),
    h("td", { class: "num", "data-label": "Total", "data-field": "total" }, num(x.total)),
    h("td", { class: "num", "data-label": "Received / sent" }, `${num(x.totalrecv)} / ${num(x.totalsent)}`),
    h("td", { class: "num", "data-label": "Rate (sent)" }, x.rate ? rate(x.rate.sentPerMinute) : "—"),
    h("td", { class: "num", "data-label": "Oldest" }, duration(x.oldestAge)),
    h("td", { "data-label": "Dead letters", "data-field": "dlq" }, dlqCell),
    h("td", { "data-label": "Depth trend" },
      sparkline(depth, `Depth of ${x.name} while the console was open: now ${x.total}`)),
  );
}

function createForm(ctx, close) {
  const form = h("form", { id: "create-panel", class: "card panel", hidden: true, novalidate: true },
    h("h2", {}, "New queue"),
    h("div", { class: "grid-fields" },
      field("new-name", "Name", { type: "text", hint: "Letters, digits, - and _; up to 160 characters" }),
      field("new-vt", "Visibility timeout (s)", { min: 0, placeholder: "node default" }),
      field("new-delay", "Delay (s)", { min: 0, placeholder: "0" }),
      field("new-maxsize", "Max message size (bytes)", { min: 1024, placeholder: "65536" }),
      field("new-mrc", "Max receive count", { min: 0, placeholder: "off", hint: "Then dead-letter (or drop)" }),
      field("new-dlq", "Dead-letter queue", { type: "text", placeholder: "none" }),
      field("new-ttl", "Message TTL (s)", { min: 0, placeholder: "off" })),
    h("p", { class: "field-error", role: "alert", id: "create-error" }),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", onclick: close }, "Cancel"),
      h("button", { type: "submit", class: "btn btn-primary" }, "Create queue")));
  form.addEventListener("keydown", (ev) => { if (ev.key === "Escape") close(); });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    const name = val("new-name");
    const error = form.querySelector("#create-error");
    if (!name) { error.textContent = "Give the queue a name."; form.querySelector("#new-name").focus(); return; }
    const attrs = {};
    for (const [id, key] of [["new-vt", "vt"], ["new-delay", "delay"], ["new-maxsize", "maxsize"],
      ["new-mrc", "maxReceiveCount"], ["new-ttl", "messageTtl"]]) {
      if (val(id) !== "") attrs[key] = Number(val(id));
    }
    if (val("new-dlq")) attrs.deadLetterQueue = val("new-dlq");
    try {
      await ctx.guard(() => api.create(name, attrs));
      error.textContent = "";
      form.reset();
      say(`Queue ${name} created.`);
      location.hash = `#/queues/${q(name)}`;
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

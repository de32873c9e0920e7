// One queue: numbers, charts, attributes (and their editing), peek, redrive, purge, delete.

import { api, q } from "./api.js";
import {
  h, replace, say, num, duration, rate, datetime, lineChart, field, confirmAction, stat,
} from "./ui.js";
import { depthHistory, recordDepth } from "./queues.js";

const PEEK_SIZES = [10, 25, 50, 100];
const BODY_PREVIEW = 160; // characters shown before "Show all"

export function mount(container, ctx, name) {
  let queue = null;
  let editing = false;
  let dlqSig = null;

  const badges = h("span", { class: "badges" });
  const cards = h("div", { class: "cards" });
  const charts = h("div", { class: "chart-grid" });
  const attrsBody = h("div");
  const editBtn = ctx.canAdmin
    ? h("button", { type: "button", class: "btn", onclick: () => startEdit() }, "Edit attributes")
    : null;
  const dlqBox = h("div");
  const peekBox = peekSection(name, ctx);
  const notFound = h("div", { class: "card notice", hidden: true },
    h("p", {}, "Queue ", h("strong", {}, name), " does not exist (any more)."),
    h("p", {}, h("a", { href: "#/queues" }, "Back to the queues")));

  const main = h("div", { class: "queue-page" },
    cards,
    h("section", { class: "card", "aria-labelledby": "charts-title" },
      h("h2", { id: "charts-title" }, "Activity"), charts),
    h("section", { class: "card", "aria-labelledby": "attrs-title" },
      h("div", { class: "section-head" }, h("h2", { id: "attrs-title" }, "Attributes"), editBtn),
      attrsBody),
    dlqBox,
    peekBox.section,
    ctx.canAdmin ? dangerZone(name, ctx) : null);

  container.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/queues" }, "Queues"), h("span", { "aria-hidden": "true" }, " / ")),
    h("div", { class: "page-head" }, h("h1", {}, name), badges),
    notFound, main);

  function startEdit() {
    editing = true;
    editBtn.hidden = true;
    replace(attrsBody, editForm(queue, ctx, (saved) => {
      editing = false;
      editBtn.hidden = false;
      if (saved) { queue = saved; say(`Attributes of ${name} saved.`); }
      render();
      editBtn.focus();
    }));
    attrsBody.querySelector("input").focus();
  }

  function render(rates = null) {
    replace(badges, queueBadges(queue));
    const hiddenCount = queue.hidden;
    replace(cards,
      stat("Visible", num(queue.visible), "ready to be received", { name: "visible" }),
      stat("In flight / delayed", num(hiddenCount), "unacknowledged or delayed", { name: "hidden" }),
      stat("Total", num(queue.total), "", { name: "total" }),
      stat("Oldest message", duration(queue.oldestAge), "age of the next in line"),
      stat("Sent", queue.rate ? rate(queue.rate.sentPerMinute) : "—", `${num(queue.totalsent)} in all`),
      stat("Received", queue.rate ? rate(queue.rate.receivedPerMinute) : "—", `${num(queue.totalrecv)} in all`));
    if (rates) {
      const pts = rates.points;
      replace(charts,
        lineChart([
          { name: "Sent", cls: "s-sent", points: pts.map((p) => [p.t, p.sentPerMinute]) },
          { name: "Received", cls: "s-recv", points: pts.map((p) => [p.t, p.receivedPerMinute]) },
        ], {
          label: `Messages sent and received per minute, last ${Math.round(rates.history / 60)} minutes`,
          unit: `per minute, sampled every ${rates.interval} s by this node`,
          empty: rates.interval > 0
            ? `Rates appear after two samples (every ${rates.interval} s).`
            : "Rates are off on this node (rate_sample_interval = 0).",
        }),
        lineChart([{ name: "Depth (total)", cls: "s-depth", points: depthHistory.get(name) || [] }], {
          label: "Total messages in the queue while the console was open",
          unit: "messages, while this page was open",
          empty: "Depth is drawn from this page's own updates: it appears after the next one.",
        }));
    }
    if (!editing) replace(attrsBody, attributes(queue));
    // The redrive form is rebuilt only when the sources change: a refresh keeps what is typed.
    const sig = queue.deadLetterFor.join(",");
    if (sig !== dlqSig) {
      dlqSig = sig;
      replace(dlqBox, deadLetters(name, queue.deadLetterFor, () => queue, ctx));
    }
    const depth = dlqBox.querySelector('[data-field="dlq-depth"]');
    if (depth) depth.textContent = num(queue.total);
    const redriveBtn = dlqBox.querySelector(".redrive-form [type=submit]");
    if (redriveBtn) redriveBtn.disabled = queue.total === 0;
  }

  return {
    async refresh() {
      let rates;
      try {
        [queue, rates] = await Promise.all([api.queue(name), api.rates(name)]);
      } catch (err) {
        if (err.code === "queueNotFound") {
          notFound.hidden = false;
          main.hidden = true;
          replace(badges);
          return;
        }
        throw err;
      }
      notFound.hidden = true;
      main.hidden = false;
      recordDepth(queue);
      render(rates);
    },
  };
}

function queueBadges(x) {
  const out = [];
  if (x.groupMembers) out.push(h("span", { class: "badge badge-info" }, `group of ${x.groupMembers.length}`));
  if (x.deadLetterFor.length) out.push(h("span", { class: "badge badge-info" }, `dead-letter queue of ${x.deadLetterFor.join(", ")}`));
  if (x.deadLetterQueue) {
    const depth = x.deadLetterQueue.depth;
    out.push(h("a", { class: `badge ${depth ? "badge-warn" : "badge-ok"}`, href: `#/queues/${q(x.deadLetterQueue.name)}` },
      `DLQ ${x.deadLetterQueue.name} · ${depth === null ? "missing" : num(depth)}`));
  }
  return out;
}

function attributes(x) {
  const seconds = (v) => (v ? `${num(v)} s` : "off");
  const rows = [
    ["Visibility timeout", `${num(x.vt)} s`],
    ["Delay", `${num(x.delay)} s`],
    ["Max message size", x.maxsize === -1 ? "unlimited" : `${num(x.maxsize)} bytes`],
    ["Max receive count", x.maxReceiveCount ? num(x.maxReceiveCount) : "off"],
    ["Dead-letter queue", x.deadLetterQueue
      ? h("a", { href: `#/queues/${q(x.deadLetterQueue.name)}` }, x.deadLetterQueue.name) : "none"],
    ["Message TTL", seconds(x.messageTtl)],
    ...(x.groupMembers ? [["Group members", x.groupMembers.length
      ? x.groupMembers.map((m, i) => [i ? ", " : "", h("a", { href: `#/queues/${q(m)}` }, m)])
      : "none"]] : []),
    ["Sent in all", num(x.totalsent)],
    ["Received in all", num(x.totalrecv)],
    ["Expired (TTL)", num(x.totalexpired)],
    ["Over max receive count", num(x.totalexceeded)],
    ["Created", datetime(x.created)],
    ["Modified", datetime(x.modified)],
  ];
  return h("dl", { class: "attrs" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function editForm(x, ctx, done) {
  const form = h("form", { class: "edit-form", novalidate: true, "aria-label": "Edit attributes" },
    h("div", { class: "grid-fields" },
      field("edit-vt", "Visibility timeout (s)", { value: x.vt, min: 0 }),
      field("edit-delay", "Delay (s)", { value: x.delay, min: 0 }),
      field("edit-maxsize", "Max message size (bytes)", { value: x.maxsize, hint: "1024 to 65536, or -1 for unlimited" }),
      field("edit-mrc", "Max receive count", { value: x.maxReceiveCount ?? 0, min: 0, hint: "0 = off" }),
      field("edit-dlq", "Dead-letter queue", { type: "text", value: x.deadLetterQueue ? x.deadLetterQueue.name : "", hint: "Empty = none" }),
      field("edit-ttl", "Message TTL (s)", { value: x.messageTtl ?? 0, min: 0, hint: "0 = off" })),
    h("p", { class: "field-error", role: "alert" }),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", onclick: () => done(null) }, "Cancel"),
      h("button", { type: "submit", class: "btn btn-primary" }, "Save")));
  form.addEventListener("keydown", (ev) => { if (ev.key === "Escape") done(null); });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    const body = {};
    for (const [id, key] of [["edit-vt", "vt"], ["edit-delay", "delay"], ["edit-maxsize", "maxsize"],
      ["edit-mrc", "maxReceiveCount"], ["edit-ttl", "messageTtl"]]) {
      if (val(id) === "" || !Number.isInteger(Number(val(id)))) {
        form.querySelector(".field-error").textContent = "Every number must be a whole number.";
        form.querySelector(`#${id}`).focus();
        return;
      }
      body[key] = Number(val(id));
    }
    body.deadLetterQueue = val("edit-dlq");
    try {
      done(await ctx.guard(() => api.update(x.name, body)));
    } catch (err) {
      form.querySelector(".field-error").textContent = err.message;
    }
  });
  return form;
}

function deadLetters(name, sources, current, ctx) {
  if (!sources.length) return null;
  const section = h("section", { class: "card", "aria-labelledby": "redrive-title" },
    h("h2", { id: "redrive-title" }, "Redrive dead letters"),
    h("p", {}, `This is the dead-letter queue of ${sources.join(", ")}. It holds `,
      h("strong", { "data-field": "dlq-depth" }, num(current().total)), " message(s)."));
  if (!ctx.canAdmin) {
    section.append(h("p", { class: "muted" }, "Redriving needs a key with the admin scope."));
    return section;
  }
  const form = h("form", { class: "redrive-form", novalidate: true });
  const target = sources.length > 1
    ? h("div", { class: "field" }, h("label", { for: "redrive-to" }, "Move back to"),
      h("select", { id: "redrive-to" }, sources.map((s) => h("option", { value: s }, s))))
    : h("p", {}, "Moves messages back to ", h("strong", {}, sources[0]),
      ", oldest first, visible at once, receive count reset.");
  const all = h("input", { type: "radio", name: "redrive-n", id: "redrive-all", value: "all", checked: true });
  const some = h("input", { type: "radio", name: "redrive-n", id: "redrive-some", value: "some" });
  const count = h("input", { type: "number", id: "redrive-count", min: 1, value: 1, inputmode: "numeric", disabled: true });
  const sync = () => { count.disabled = !some.checked; };
  all.addEventListener("change", sync);
  some.addEventListener("change", sync);
  form.append(target,
    h("fieldset", { class: "inline" },
      h("legend", {}, "How many"),
      h("span", { class: "radio" }, all, h("label", { for: "redrive-all" }, "All")),
      h("span", { class: "radio" }, some, h("label", { for: "redrive-some" }, "At most")),
      h("label", { for: "redrive-count", class: "visually-hidden" }, "Number of messages to redrive"),
      count),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "btn btn-primary", disabled: current().total === 0 }, "Redrive…")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const to = sources.length > 1 ? form.querySelector("#redrive-to").value : sources[0];
    const n = some.checked ? Number(count.value) : null;
    if (n !== null && !(Number.isInteger(n) && n >= 1)) { say("The number of messages must be 1 or more.", "error"); count.focus(); return; }
    const what = n === null ? `all ${num(current().total)} message(s)` : `up to ${num(n)} message(s)`;
    const ok = await confirmAction({
      title: "Redrive dead letters", text: `Move ${what} from ${name} back to ${to}?`,
      confirm: "Redrive", danger: false,
    });
    if (!ok) return;
    try {
      const res = await ctx.guard(() => api.redrive(name, n === null ? { to } : { to, count: n }));
      say(`Moved ${num(res.moved)} message(s) from ${res.queue} back to ${res.to}.`);
      ctx.refreshNow();
    } catch (err) {
      say(`Redrive failed: ${err.message}`, "error");
    }
  });
  section.append(form);
  return section;
}

function peekSection(name, ctx) {
  const size = h("select", { id: "peek-size" }, PEEK_SIZES.map((n) => h("option", { value: n }, String(n))));
  const list = h("div", { class: "peek-list", "aria-live": "polite" });
  const note = h("p", { class: "muted" }, "Peeking reads the next messages in line without receiving them: no receive count, no visibility change.");
  const btn = h("button", { type: "button", class: "btn btn-primary" }, "Peek messages");
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    try {
      const res = await ctx.guard(() => api.peek(name, size.value));
      replace(list, peekTable(res.messages));
    } catch (err) {
      say(`Peek failed: ${err.message}`, "error");
    } finally {
      btn.disabled = false;
    }
  });
  const section = h("section", { class: "card", "aria-labelledby": "peek-title" },
    h("div", { class: "section-head" }, h("h2", { id: "peek-title" }, "Messages"),
      h("div", { class: "page-actions" },
        h("label", { for: "peek-size" }, "Show"), size, btn)),
    note, list);
  return { section };
}

function peekTable(messages) {
  if (!messages.length) return h("p", { class: "empty muted" }, "The queue is empty.");
  const now = Date.now();
  return h("div", { class: "table-wrap" },
    h("table", { class: "data peek-table" },
      h("caption", { class: "visually-hidden" }, `The next ${messages.length} messages in line`),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Id"), h("th", { scope: "col" }, "Sent"),
        h("th", { scope: "col" }, "State"), h("th", { scope: "col", class: "num" }, "Receives"),
        h("th", { scope: "col" }, "Body"))),
      h("tbody", {}, messages.map((m) => {
        const pending = m.visibleAt > now;
        return h("tr", { "data-id": m.id },
          h("td", { "data-label": "Id" }, h("code", { class: "msg-id" }, m.id)),
          h("td", { "data-label": "Sent" }, new Date(m.sent).toLocaleString()),
          h("td", { "data-label": "State" }, pending
            ? h("span", { class: "badge badge-info", title: new Date(m.visibleAt).toLocaleString() }, `hidden ${duration((m.visibleAt - now) / 1000)}`)
            : h("span", { class: "badge badge-ok" }, "visible")),
          h("td", { class: "num", "data-label": "Receives" }, num(m.rc)),
          h("td", { "data-label": "Body", class: "body-cell" }, body(m)));
      }))));
}

function body(m) {
  // length is null for a body too large to fetch whole: its size in bytes is always known.
  const total = m.length ?? m.size;
  const unit = m.length === null || m.length === undefined ? "bytes" : "characters";
  const suffix = m.truncated ? ` … (${num(total)} ${unit} in all)` : "";
  if (m.message.length <= BODY_PREVIEW) {
    return h("pre", { class: "msg-body" }, m.message, suffix ? h("span", { class: "muted" }, suffix) : null);
  }
  return h("details", { class: "msg-details" },
    h("summary", {}, h("span", { class: "msg-body" }, m.message.slice(0, BODY_PREVIEW)),
      h("span", { class: "muted" }, ` … show ${m.truncated ? "more" : "all"} (${num(total)} ${unit})`)),
    h("pre", { class: "msg-body" }, m.message, suffix ? h("span", { class: "muted" }, suffix) : null));
}

function dangerZone(name, ctx) {
  const purge = h("button", { type: "button", class: "btn btn-danger-outline" }, "Purge messages…");
  const del = h("button", { type: "button", class: "btn btn-danger" }, "Delete queue…");
  purge.addEventListener("click", async () => {
    const ok = await confirmAction({
      title: `Purge ${name}`, typed: name, confirm: "Purge",
      text: "Every message in the queue is deleted. The queue, its settings and counters stay. This cannot be undone.",
    });
    if (!ok) return;
    try {
      const res = await ctx.guard(() => api.purge(name));
      say(`Purged ${num(res.purged)} message(s) from ${name}.`);
      ctx.refreshNow();
    } catch (err) { say(`Purge failed: ${err.message}`, "error"); }
  });
  del.addEventListener("click", async () => {
    const ok = await confirmAction({
      title: `Delete ${name}`, typed: name, confirm: "Delete queue",
      text: "The queue, its settings and all its messages are deleted. This cannot be undone.",
    });
    if (!ok) return;
    try {
      await ctx.guard(() => api.remove(name));
      say(`Queue ${name} deleted.`);
      location.hash = "#/queues";
    } catch (err) { say(`Delete failed: ${err.message}`, "error"); }
  });
  return h("section", { class: "card danger", "aria-labelledby": "danger-title" },
    h("h2", { id: "danger-title" }, "Danger zone"),
    h("div", { class: "danger-row" },
      h("div", {}, h("strong", {}, "Purge"), h("p", { class: "muted" }, "Delete every message; keep the queue.")), purge),
    h("div", { class: "danger-row" },
      h("div", {}, h("strong", {}, "Delete"), h("p", { class: "muted" }, "Delete the queue and its messages.")), del));
}

// The demo page's DOM: the connection badge, the events list, the subscription chips and the
// message log (acknowledged through wsmq-client's Delivery). Text only, never HTML.
//
// `pageView` is what the page's own connection in app.js draws into; `paneView(pane)` is what a
// device pane ("Laptop", "Phone") draws into, with the same methods, over its own elements.

const HEX_ID_RE = /^[0-9a-f]{24}$/;
const MAX_LOG = 500;
const MAX_EVENTS = 200;

export const $ = (id) => document.getElementById(id);

// A new element with `props` (dataset merged) and children (nodes or text, never HTML).
export function h(tag, props, ...children) {
  const { dataset, ...rest } = props;
  const el = Object.assign(document.createElement(tag), rest);
  Object.assign(el.dataset, dataset || {});
  el.append(...children);
  return el;
}

// A queue's label ("your inbox") with its exact name in the tooltip when they differ.
function labelled(tag, className, qname) {
  const label = queueLabel(qname);
  return h(tag, label === qname ? { className, textContent: label }
    : { className, textContent: label, title: qname });
}

// Who is who, for queue labels: set by app.js (the logged-in user's id, the demo's users).
let names = () => ({ userId: null, users: [] });

export function setNames(source) {
  names = source;
}

// A queue as people read it: a user's own queue is named by its 24-hex id.
export function queueLabel(qname) {
  const { userId, users } = names();
  if (qname && qname === userId) return "your inbox";
  const owner = users.find((u) => u.id === qname);
  if (owner) return `${owner.userName}'s inbox`;
  if (HEX_ID_RE.test(qname)) return `${qname.slice(0, 6)}…${qname.slice(-4)}`;
  return qname;
}

// For the events list: the label and the exact name when they differ.
export function queueText(qname) {
  const label = queueLabel(qname);
  return label === qname ? qname : `${label} (${qname})`;
}

// The chat format shared with examples/chat/chat.py: a JSON object with string "from" and
// "text". Anything else is plain text from an unknown sender.
function parseChat(body) {
  let data;
  try { data = JSON.parse(body); } catch (_e) { return null; }
  if (data && typeof data === "object" && typeof data.from === "string"
      && typeof data.text === "string") return { from: data.from, text: data.text };
  return null;
}

export function showError(formId, text) {
  $(`${formId}-error`).textContent = text;
}

export function timeText(ms) {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? "–" : d.toLocaleTimeString();
}

export function setState(state, text) {
  $("state").dataset.state = state;
  $("state-text").textContent = text;
  document.body.dataset.state = state;
}

export function event(kind, text) {
  const list = $("events");
  list.prepend(h("li", { className: `ev ev-${kind}` },
    h("time", { textContent: new Date().toLocaleTimeString() }), " ", h("span", { textContent: text })));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

// A chip's status in words ("offline": a device pane's, whose inbox collects meanwhile).
const CHIP_STATUS = { active: "subscribed", pending: "pending", offline: "offline" };

export function renderSubscriptions(device, list = $("subscriptions"), removable = true) {
  const subs = device ? device.subscriptions : new Map();
  const chips = [...subs].map(([qname, entry]) => h(
    "li", { className: `chip chip-${entry.status}`, dataset: { queue: qname, status: entry.status } },
    labelled("span", "chip-name", qname), " ",
    h("span", { className: "chip-status", textContent: CHIP_STATUS[entry.status] }),
    ...(removable ? [" ", h("button", {
      type: "button", className: "chip-remove", textContent: "×",
      ariaLabel: `Unsubscribe from ${queueLabel(qname)}`,
      onclick: () => device.unsubscribe(qname),
    })] : []),
  ));
  list.replaceChildren(
    ...(chips.length ? chips : [h("li", { className: "empty", textContent: "None yet." })]));
}

function setAckStatus(li, acked, text) {
  li.dataset.acked = acked;
  li.querySelector(".ack-status").textContent = text;
  const btn = li.querySelector("button.ack");
  if (btn) btn.remove();
}

// Settle a delivery with a confirmed ack: the row says "acknowledged" only once the node
// deleted the message. `false` means the connection that delivered it closed first (or the
// node refused the ack): the message comes again, as a new row.
function ackRow(li, delivery) {
  li.querySelector(".ack-status").textContent = "acknowledging…";
  delivery.ack({ confirm: true }).then((ok) => {
    if (ok) setAckStatus(li, "true", "acknowledged");
    else setAckStatus(li, "released", "not acknowledged: it will be delivered again");
  });
}

function addMessageRow(log, delivery, autoAck) {
  const { id, queue, rc, sent, message } = delivery;
  const chat = parseChat(message);
  const status = h("span", { className: "ack-status", textContent: "not acknowledged" });
  const meta = h("div", { className: "meta" },
    labelled("span", "queue", queue),
    h("time", { dateTime: new Date(sent).toISOString(), textContent: timeText(sent), title: "sent" }),
    h("span", { className: rc > 1 ? "rc redelivered" : "rc",
      textContent: rc > 1 ? `delivery ${rc} (redelivered)` : `delivery ${rc}` }),
    h("code", { className: "id", textContent: id }),
    status);
  const li = h("li", { className: "msg", dataset: { id, queue, rc: String(rc), acked: "false" } },
    meta, h("pre", { className: "body", textContent: chat ? chat.text : message }));
  if (chat) {
    meta.prepend(h("span", { className: "from", textContent: chat.from,
      title: "sender (as the sender wrote it)" }));
    li.dataset.from = chat.from;
  }
  if (autoAck) {
    ackRow(li, delivery);
  } else {
    const btn = h("button", { type: "button", className: "ack", textContent: "Ack",
      ariaLabel: `Acknowledge message ${id} from ${queue}` });
    btn.onclick = () => {
      btn.disabled = true;
      ackRow(li, delivery);
    };
    li.append(btn);
  }
  log.prepend(li);
  while (log.children.length > MAX_LOG) log.lastElementChild.remove();
}

// The node releases a connection's unacknowledged messages when it closes: say so on their
// rows (they come again as new rows, "redelivered").
function markReleased(log) {
  for (const li of log.querySelectorAll('li.msg[data-acked="false"]')) {
    setAckStatus(li, "released", "released when the connection closed: it comes again");
  }
}

// What the page's own connection draws into: the badge at the top and sections 2 and 4.
export const pageView = {
  state: setState,
  event,
  node(url) {
    $("node-url").textContent = url || "–";
  },
  subscriptions: (device) => renderSubscriptions(device),
  message(delivery) {
    addMessageRow($("log"), delivery, $("auto-ack").checked);
  },
  released: () => markReleased($("log")),
  refused(text) {
    showError("subscribe", text);
  },
};

// What a device pane (an <article class="pane"> of index.html) draws into: its own badge,
// chips, message list and auto-ack box; its events go to the page's events list, named.
export function paneView(pane) {
  const part = (name) => pane.querySelector(`.pane-${name}`);
  const name = pane.dataset.name;
  return {
    state(state, text) {
      part("state").dataset.state = state;
      // The node and the user are shown beside: "Online" says the rest.
      part("state-text").textContent = state === "connected" ? "Online" : text;
    },
    event(kind, text) {
      event(kind, `${name}: ${text}`);
    },
    node(url) {
      part("node").textContent = url || "–";
    },
    subscriptions: (device) => renderSubscriptions(device, part("subs"), false),
    message(delivery) {
      addMessageRow(part("log"), delivery, part("auto-ack").checked);
    },
    released: () => markReleased(part("log")),
    refused(text) {
      part("error").textContent = text;
    },
    // The pane's fields back to "never connected" (logout, another user).
    clear() {
      part("log").replaceChildren();
      part("error").textContent = "";
      part("device-id").textContent = "–";
      this.node(null);
      this.state("offline", "Offline");
      renderSubscriptions(null, part("subs"), false);
    },
  };
}

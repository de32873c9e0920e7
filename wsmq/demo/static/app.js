// wsmq demo page: the HTTP login, the tokens and the forms around wsmq-client (the DOM is
// drawn by view.js).
//
// Everything on the WebSocket (first-frame /auth, subscriptions renewed after reconnects, acks,
// sends, in-band token refresh, the reconnect policy and node rotation) is wsmq-client's:
// ./wsmq-client.js is a byte-identical copy of clients/js/wsmq-client.js (scripts/sync-js-client).
//
// Layout: `session` is the logged-in user (HTTP tokens, shared by all of its connections);
// `openDevice(nodes, view, queues, deviceId)` is one connection of that user with its own
// subscriptions, drawing into a `view`: the page's own connection (plain subscriptions, the
// send form) and, in section 4, two device panes ("Laptop", "Phone"), each a connection that
// subscribes as a device (`{device}`: its own durable inbox of every queue, docs/delivery.md).
import {
  $, event, h, pageView, paneView, queueLabel, queueText, renderSubscriptions, setNames,
  setState, showError, timeText,
} from "./view.js";
import {
  CommandFailed, ConnectionClosed, TokensFailed, UnauthorizedError, connect,
} from "./wsmq-client.js";

// The server's rule (wsmq/protocol/names.py): QUEUES is the RSMQ registry key, reserved.
const QNAME_RE = /^(?!QUEUES$)[A-Za-z0-9_-]{1,160}$/;
const QNAME_HINT = "Queue names use letters, digits, _ and - (up to 160); QUEUES is reserved.";
// What an error reply to /send or /subscribe means, in words (codes: docs/protocol.md).
const ERROR_TEXT = {
  forbidden: "you may not use this queue",
  queue_not_found: "this queue does not exist",
  invalid_queue: "not a valid queue name",
  message_too_long: "the message is too long for this queue",
  too_many_subscriptions: "too many subscriptions on this connection",
  unavailable: "the node is busy: try again",
};
const BACKOFF = { base: 250, cap: 8000 }; // ms, doubling, jittered (the client's Backoff)
// The device panes: their stable device ids are kept in localStorage per user and pane (a
// browser profile is a device; two tabs of it share the ids and compete for their messages).
const PANES = [{ key: "laptop", name: "Laptop" }, { key: "phone", name: "Phone" }];

const session = {
  nodes: [],
  userName: null,
  userId: null,
  token: null,
  accessToken: null,
  expiresAt: 0, // epoch ms of the x-token's exp
  login: 0, // bumped by every login and logout: late answers of an older one are dropped
  refreshing: null, // the /auth/token call in flight, shared by every caller
  device: null, // the page's own connection (sections 2 and 3)
  devicesOpen: false, // whether the panes are in use (a device may be offline meanwhile)
  knownUsers: [],
  sharedQueue: null,
};

// The device panes of section 4 (DOM elements inside: kept out of `session`, which the tests
// read as JSON): {key, name, root, view, deviceId, device (null while offline)}.
const panes = [];

setNames(() => ({ userId: session.userId, users: session.knownUsers }));

// -----------------------------------------------------------------------------------------
// small helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function defaultNodes() {
  const params = new URLSearchParams(window.location.search);
  const fromQuery = (params.get("nodes") || "").split(",").map((s) => s.trim()).filter(Boolean);
  if (fromQuery.length) return fromQuery;
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return [`${scheme}//${window.location.host}/`];
}

function parseNodes(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter((s) => /^wss?:\/\//.test(s));
}

// Where /auth/* is, best first: this page's own origin (the demo's page server relays it to a
// node that answers; a node serving the page has it), then the nodes' HTTP origins.
function authOrigins() {
  const origins = window.location.protocol.startsWith("http") ? [window.location.origin] : [];
  for (const node of session.nodes) {
    const origin = node.replace(/^ws(s?):\/\/([^/]+).*$/, "http$1://$2");
    if (!origins.includes(origin)) origins.push(origin);
  }
  return origins;
}

function chatBody(text) {
  return JSON.stringify({ from: session.userName || session.userId, text });
}

// An error frame the client turned into a CommandFailed, for the events list and the forms.
function failureLine(error) {
  const where = error.queue ? ` on ${queueText(error.queue)}` : "";
  return `${error.errorCode}${where}: ${error.detail || ""}`;
}

function failureText(error) {
  return ERROR_TEXT[error.errorCode] || error.detail || error.errorCode;
}

function renderWhoami() {
  $("whoami").hidden = !session.token;
  $("user-name-shown").textContent = session.userName || "–";
  $("user-id").textContent = session.userId || "–";
  $("token-exp").textContent = session.expiresAt ? timeText(session.expiresAt) : "–";
  $("logout-button").hidden = !session.token;
  $("login-button").textContent = session.token ? "Log in again" : "Log in and connect";
}

// -----------------------------------------------------------------------------------------
// HTTP: login, fresh tokens, logout (relayed by the demo's page server to a node that answers)

async function postJson(path, body, headers) {
  let lastError = new Error("no node reachable");
  for (const origin of authOrigins()) {
    let res;
    try {
      res = await fetch(origin + path, {
        method: "POST",
        headers: { "content-type": "application/json", ...(headers || {}) },
        body: JSON.stringify(body || {}),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      lastError = e; // node down or cross-origin refused: try the next one
      continue;
    }
    let data = {};
    try { data = await res.json(); } catch (_e) { data = {}; }
    if (!res.ok) {
      const err = new Error(data.message || `HTTP ${res.status}`);
      err.status = res.status;
      err.code = data.error || "http_error";
      throw err;
    }
    return data;
  }
  throw lastError;
}

function acceptTokens(data) {
  session.token = data.token;
  if (data.accessToken) session.accessToken = data.accessToken;
  session.userId = data.userId || session.userId;
  session.expiresAt = Date.now() + data.expiresIn * 1000;
  renderWhoami();
}

// A fresh x-token from POST /auth/token with the access token; one call at a time, shared by
// every connection. A refused access token (401/403: logged out elsewhere, a newer login,
// disabled) is final: UnauthorizedError ends the client that asked. Anything else (every node
// down, 429) is thrown as it is: the client reports it and calls again after its backoff.
function freshTokens() {
  if (!session.refreshing || session.refreshing.login !== session.login) {
    const call = fetchTokens().finally(() => {
      if (session.refreshing === call) session.refreshing = null;
    });
    call.login = session.login;
    session.refreshing = call;
  }
  return session.refreshing;
}

async function fetchTokens() {
  const login = session.login;
  if (!session.accessToken) throw new UnauthorizedError("logged out");
  let data;
  try {
    data = await postJson(
      "/auth/token",
      { userId: session.userId, userName: session.userName },
      { "x-access-token": session.accessToken, "x-token": session.token },
    );
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      throw new UnauthorizedError(`access refused: ${e.message}`, { cause: e });
    }
    throw e;
  }
  if (session.login !== login) throw new UnauthorizedError("logged out");
  acceptTokens(data);
  event("info", "x-token refreshed over HTTP");
  return [session.token, session.accessToken];
}

// The `tokens` callback of one device's client. The client calls it at its first connect
// (the login's tokens serve), after a 4401/4403 close, and when the node says `expiring`
// (then the connection is up). The node warns `expiring_warning` (60 s) before exp, and with a
// shorter TTL again right after every refresh: fetching halfway to the deadline instead of at
// once keeps a short TTL (`wsmq demo --token-ttl 20`) from becoming a refresh storm.
// An x-token this client has not had yet and that is still good (the login's, or one another
// connection of the page fetched meanwhile) serves without a call: the user's connections share
// their refreshes.
function tokenSource(device) {
  let given = null; // the x-token this client got last
  const unseen = () => session.token && session.token !== given
    && session.expiresAt - Date.now() > 2000;
  return async () => {
    const extending = device.client !== null && device.client.connected;
    if (extending && !unseen()) {
      await device.wait(Math.max(0, (session.expiresAt - Date.now()) / 2));
    }
    const pair = unseen() ? [session.token, session.accessToken] : await freshTokens();
    given = pair[0];
    if (extending && !device.closed) {
      device.view.event("info", "fresh token sent on the open connection, in band: no reconnect");
    }
    return pair;
  };
}

// -----------------------------------------------------------------------------------------
// a device: one wsmq-client connection of the logged-in user

// `deviceId`: subscribe as that device (every queue of this connection); null: plainly.
function openDevice(nodes, view, queues = [], deviceId = null) {
  let wake;
  const closedSignal = new Promise((resolve) => { wake = resolve; });
  const device = {
    client: null,
    node: null, // the node it is connected to, or null
    deviceId,
    closed: false,
    view,
    subscriptions: new Map(), // queue -> {sub, status: "pending" | "active"}

    // Sleep `ms`, cut short by close().
    wait(ms) {
      return Promise.race([sleep(ms), closedSignal]);
    },

    subscribe(qname) {
      if (device.subscriptions.has(qname)) return;
      const entry = { sub: null, status: "pending" };
      const options = deviceId ? { device: deviceId } : {};
      entry.sub = device.client.subscribe(qname, (delivery) => view.message(delivery), options);
      device.subscriptions.set(qname, entry);
      view.subscriptions(device);
      // The chip turns "subscribed" on the client's `subscribed` event (below); a refusal
      // arrives as an `error` event too: handled there.
      entry.sub.ready.catch(() => {});
    },

    unsubscribe(qname) {
      const entry = device.subscriptions.get(qname);
      if (!entry) return;
      device.subscriptions.delete(qname);
      view.subscriptions(device);
      entry.sub.unsubscribe().then(() => {
        view.event("info", `unsubscribed from ${queueText(qname)}`);
      });
    },

    // Resolves with the new message's id; rejects with CommandFailed or ConnectionClosed.
    send(qname, body) {
      return device.client.send(qname, body);
    },

    close() {
      if (device.closed) return;
      device.closed = true;
      wake();
      device.client.close();
    },
  };

  const client = connect(nodes, {
    tokens: tokenSource(device),
    shuffle: false, // the order of the Nodes field: first node first, then round robin
    backoff: BACKOFF,
  });
  device.client = client;
  // Events of a device closed by the page (logout, a new login) are no news.
  const on = (name, listener) => client.on(name, (...args) => {
    if (!device.closed) listener(...args);
  });

  on("connecting", (node) => view.state("connecting", `Connecting to ${node}…`));
  on("connected", (node) => {
    device.node = node;
    view.node(node);
    view.state("connected", `Connected to ${node} as ${session.userName || session.userId}`);
    view.event("info", `connected to ${node}`);
    // The client sent every subscription again: the chips stay "pending" until the node
    // answers (`subscribed` below); a refused renewal ends it (`error` below).
  });
  on("subscribed", (qname, asDevice) => {
    const entry = device.subscriptions.get(qname);
    if (!entry) return;
    entry.status = "active";
    view.subscriptions(device);
    const as = asDevice ? ` as device ${asDevice}` : "";
    view.event("info", `subscribed to ${queueText(qname)}${as}`);
  });
  on("disconnected", (code, reason, node) => {
    view.event("warn", `disconnected from ${node} (${reason ? `${code} ${reason}` : code})`);
    if (device.node === null) return; // an attempt that never connected
    device.node = null;
    for (const entry of device.subscriptions.values()) entry.status = "pending";
    view.subscriptions(device);
    view.released();
  });
  on("reconnecting", (delayMs) => {
    view.state("reconnecting", `Reconnecting in ${(delayMs / 1000).toFixed(1)} s…`);
  });
  on("error", (error) => onDeviceError(device, error));

  for (const qname of queues) device.subscribe(qname);
  return device;
}

function onDeviceError(device, error) {
  const view = device.view;
  if (error.cause instanceof UnauthorizedError) {
    // /auth/token refused the access token (the tokens callback threw UnauthorizedError, the
    // client ended): reconnecting cannot help, log in again.
    if (session.accessToken) loggedOut("access revoked: log in again");
    return;
  }
  if (error instanceof TokensFailed) {
    view.event("error", `token refresh failed: ${error.cause?.message ?? error.message}; `
      + "the client tries again");
    return;
  }
  if (error instanceof CommandFailed) {
    view.event("error", failureLine(error));
    const entry = error.queue ? device.subscriptions.get(error.queue) : undefined;
    if (entry && !entry.sub.active) {
      // The node refused the subscription (or its renewal): it ended, the chip goes.
      device.subscriptions.delete(error.queue);
      view.subscriptions(device);
      view.refused(`Not subscribed to ${queueLabel(error.queue)}: ${failureText(error)}`);
    }
    return;
  }
  view.event("error", error.message);
  if (error.fatal) {
    // The client stopped (e.g. a 1009 close for a frame over the node's limit).
    device.node = null;
    view.node(null);
    view.state("offline", `Not connected (${error.message}): log in again`);
  }
}

// -----------------------------------------------------------------------------------------
// login, logout

async function login(ev) {
  ev.preventDefault();
  const nodes = parseNodes($("nodes").value);
  if (!nodes.length) {
    event("error", "give at least one ws:// or wss:// node URL");
    return;
  }
  const userName = $("user-name").value.trim();
  const password = $("password").value;
  showError("login", "");
  const before = [$("state").dataset.state, $("state-text").textContent];
  setState("connecting", "Logging in…");
  let data;
  try {
    data = await postJson("/auth/login", { userName, password });
  } catch (e) {
    setState(...before); // a failed attempt leaves a live connection as it was
    event("error", `login failed: ${e.message}`);
    showError("login", `Login failed: ${e.message}`);
    return;
  }
  // The same user keeps their subscriptions on the new connection; nothing of another
  // user's carries over.
  const otherUser = session.userName !== null && session.userName !== userName;
  const queues = !otherUser && session.device ? [...session.device.subscriptions.keys()] : [];
  const devicesWereOpen = !otherUser && session.devicesOpen;
  closePanes();
  closeDevice();
  if (otherUser) clearUserState();
  session.login += 1;
  session.nodes = nodes;
  session.userName = userName;
  session.userId = null;
  acceptTokens(data);
  $("password").value = "";
  event("info", `logged in as ${userName} (user id ${session.userId})`);
  prefillQueues();
  session.device = openDevice(nodes, pageView, queues);
  renderDevicesButtons();
  if (devicesWereOpen) openPanes(); // the same user: its devices again, with the same ids
}

function closeDevice() {
  if (session.device) session.device.close();
  session.device = null;
  pageView.node(null);
  renderDevicesButtons();
}

// -----------------------------------------------------------------------------------------
// the device panes: two devices of the logged-in user, each its own connection

// The pane's device id, kept per user and pane in localStorage (in memory if it is disabled).
const memoryIds = new Map();

function storedDeviceId(paneKey) {
  const key = `wsmq-demo.device.${session.userId}.${paneKey}`;
  let id = null;
  try { id = window.localStorage.getItem(key); } catch (_e) { id = memoryIds.get(key) || null; }
  if (id && /^[A-Za-z0-9_-]{1,64}$/.test(id)) return id;
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  id = `${paneKey}-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  try { window.localStorage.setItem(key, id); } catch (_e) { memoryIds.set(key, id); }
  return id;
}

// The queues a device subscribes to: the user's inbox and the shared queue.
function paneQueues() {
  return [session.userId, session.sharedQueue].filter(Boolean);
}

function openPanes() {
  if (!session.device) return;
  session.devicesOpen = true;
  for (const pane of panes) {
    pane.deviceId = storedDeviceId(pane.key);
    pane.view.clear();
    pane.root.querySelector(".pane-device-id").textContent = pane.deviceId;
    pane.root.dataset.device = pane.deviceId;
    paneOnline(pane);
  }
  $("devices-status").textContent = "";
  renderDevicesButtons();
}

function paneOnline(pane) {
  if (pane.device) return;
  pane.root.querySelector(".pane-error").textContent = "";
  pane.device = openDevice(session.nodes, pane.view, paneQueues(), pane.deviceId);
  renderPaneToggle(pane);
}

// Close the pane's connection: the node releases what it held unacknowledged, and the
// device's inbox collects what arrives until it comes back.
function paneOffline(pane) {
  if (!pane.device) return;
  const device = pane.device;
  pane.device = null;
  device.close();
  for (const entry of device.subscriptions.values()) entry.status = "offline";
  pane.view.subscriptions(device);
  pane.view.released();
  pane.view.node(null);
  pane.view.state("offline", "Offline");
  pane.view.event("info", "offline: its inboxes keep what arrives until it comes back");
  renderPaneToggle(pane);
}

function renderPaneToggle(pane) {
  const button = pane.root.querySelector(".pane-toggle");
  button.disabled = !session.devicesOpen;
  button.textContent = pane.device ? "Go offline" : "Come back";
  // The visible text in the name (what voice control users say), the pane's name after it.
  button.ariaLabel = `${button.textContent}: ${pane.name}`;
}

function togglePane(pane) {
  if (!session.devicesOpen) return;
  if (pane.device) paneOffline(pane);
  else paneOnline(pane);
}

// Both connections closed; the devices keep their inboxes (they catch up when opened again).
function closePanes() {
  session.devicesOpen = false;
  for (const pane of panes) {
    if (pane.device) paneOffline(pane);
    renderPaneToggle(pane);
  }
  renderDevicesButtons();
}

// `/leave` both devices of every queue: their inboxes go, the queues are plain queues again.
// An online pane leaves on its own connection (the node ends its subscription first); an
// offline one is left through the page's own connection.
async function removeDevices() {
  const queues = paneQueues();
  const via = new Map(panes.map((pane) => [pane, pane.device || session.device]));
  $("devices-status").textContent = "Removing both devices…";
  let failed = null;
  for (const [pane, device] of via) {
    for (const qname of queues) {
      try {
        if (!device || device.closed) throw new Error("not connected");
        await device.client.leave(qname, pane.deviceId);
      } catch (e) {
        failed = `${pane.name} not removed from ${queueLabel(qname)}: `
          + `${e instanceof CommandFailed ? failureText(e) : e.message}`;
        event("error", failed);
      }
    }
  }
  closePanes();
  for (const pane of panes) pane.view.clear();
  $("devices-status").textContent = failed || "Both devices removed, with their inboxes.";
  if (!failed) event("info", "both devices removed: the queues are plain queues again");
}

function renderDevicesButtons() {
  const loggedIn = session.device !== null;
  $("devices-open").disabled = !loggedIn;
  $("devices-open").hidden = session.devicesOpen;
  $("devices-close").hidden = !session.devicesOpen;
  $("devices-remove").hidden = !session.devicesOpen;
}

function prefillQueues() {
  if (!$("subscribe-queue").value && session.userId) $("subscribe-queue").value = session.userId;
  if (!$("send-queue").value) {
    const other = session.knownUsers.find((u) => u.id !== session.userId);
    $("send-queue").value = other ? other.id : (session.sharedQueue || "");
  }
  renderQueueOptions();
}

// Suggestions for both queue fields, and the label under each (e.g. "bob's inbox").
function renderQueueOptions() {
  const queues = [];
  if (session.userId) queues.push(session.userId);
  for (const u of session.knownUsers) if (!queues.includes(u.id)) queues.push(u.id);
  if (session.sharedQueue) queues.push(session.sharedQueue);
  $("queue-options").replaceChildren(
    ...queues.map((q) => h("option", { value: q, label: queueLabel(q) })));
  renderQueueLabel("subscribe-queue");
  renderQueueLabel("send-queue");
}

function renderQueueLabel(fieldId) {
  const qname = $(fieldId).value.trim();
  const label = QNAME_RE.test(qname) ? queueLabel(qname) : "";
  $(`${fieldId}-label`).textContent = label && label !== qname ? label : "";
}

// Forget everything about the user: on logout, revocation, or a login as someone else.
function clearUserState() {
  closePanes();
  for (const pane of panes) pane.view.clear();
  $("devices-status").textContent = "";
  closeDevice();
  session.userName = null;
  session.userId = null;
  $("log").replaceChildren();
  $("events").replaceChildren();
  for (const id of ["subscribe-queue", "send-queue", "send-message", "password"]) {
    $(id).value = "";
  }
  for (const form of ["login", "subscribe", "send"]) showError(form, "");
  $("send-status-live").textContent = "";
  renderSubscriptions(null);
  renderQueueOptions();
}

async function logout() {
  const access = session.accessToken;
  const body = { userId: session.userId };
  const headers = { "x-access-token": access, "x-token": session.token };
  closePanes();
  closeDevice();
  if (access) {
    try {
      await postJson("/auth/logout", body, headers);
    } catch (_e) { /* the token is dropped locally either way */ }
  }
  $("user-name").value = "";
  loggedOut("logged out");
}

// Back to the login form with nothing of the user left on the page (the user name field is
// kept after a revocation, to log in again).
function loggedOut(why) {
  session.login += 1;
  session.token = null;
  session.accessToken = null;
  session.expiresAt = 0;
  clearUserState();
  renderWhoami();
  setState("offline", `Not connected (${why})`);
  event("info", why);
}

// -----------------------------------------------------------------------------------------
// the forms

function onSubscribe(ev) {
  ev.preventDefault();
  const qname = $("subscribe-queue").value.trim();
  if (!QNAME_RE.test(qname)) {
    showError("subscribe", QNAME_HINT);
    return;
  }
  if (!session.device) {
    showError("subscribe", "Log in first.");
    return;
  }
  showError("subscribe", "");
  try {
    session.device.subscribe(qname);
  } catch (e) {
    showError("subscribe", `Not subscribed to ${queueLabel(qname)}: ${e.message}`);
  }
}

async function onSend(ev) {
  ev.preventDefault();
  const device = session.device;
  const qname = $("send-queue").value.trim();
  const text = $("send-message").value;
  if (!QNAME_RE.test(qname)) {
    showError("send", QNAME_HINT);
    return;
  }
  if (!device || !device.client.connected) {
    showError("send", "Not connected: your message is still in the box; send it once "
      + "the page is connected.");
    return;
  }
  showError("send", "");
  try {
    // The box is emptied once the node answers `sent`: a refusal keeps the text.
    const id = await device.send(qname, $("send-as-chat").checked ? chatBody(text) : text);
    event("info", `sent to ${queueText(qname)}, id ${id}`);
    if ($("send-message").value === text) $("send-message").value = ""; // unless edited since
    showError("send", "");
    $("send-status-live").textContent = `Sent to ${queueLabel(qname)}.`;
  } catch (e) {
    if (device.closed) return;
    if (e instanceof CommandFailed) {
      event("error", failureLine(e));
      showError("send", `Not sent to ${queueLabel(qname)}: ${failureText(e)}. `
        + "Your message is still in the box.");
    } else if (e instanceof ConnectionClosed) {
      // No reply came: the message may or may not be queued, so it stays in the box.
      showError("send", "The connection closed before the node confirmed your message; "
        + "it is still in the box: send it again once connected.");
    } else {
      event("error", e.message);
      showError("send", `Not sent: ${e.message}`);
    }
  }
}

// -----------------------------------------------------------------------------------------
// wiring

// The demo's page server describes its nodes and users in config.json; a page opened from
// elsewhere takes ?nodes=ws://a/,ws://b/ or falls back to its own origin.
async function loadConfig() {
  const params = new URLSearchParams(window.location.search);
  if (params.get("nodes")) return { nodes: defaultNodes() };
  try {
    const res = await fetch("config.json", { cache: "no-store" });
    if (res.ok) return await res.json();
  } catch (_e) { /* not served by the demo */ }
  return { nodes: defaultNodes() };
}

async function applyConfig() {
  const config = await loadConfig();
  if (Array.isArray(config.nodes) && config.nodes.length) session.nodes = config.nodes;
  $("nodes").value = session.nodes.join("\n");
  const params = new URLSearchParams(window.location.search);
  if (params.get("user")) $("user-name").value = params.get("user");
  if (Array.isArray(config.users) && config.users.length) {
    const names = config.users.map((u) => u.userName).join(", ");
    $("login-hint").textContent = `Demo users: ${names} (passwords are printed by wsmq demo).`;
    session.knownUsers = config.users;
  }
  if (config.sharedQueue) session.sharedQueue = config.sharedQueue;
  renderQueueOptions();
}

function init() {
  session.nodes = defaultNodes();
  $("nodes").value = session.nodes.join("\n");
  applyConfig().catch(() => {});

  $("send-form").append(
    h("p", { id: "send-status-live", className: "visually-hidden", role: "status" }));

  $("login-form").addEventListener("submit", login);
  $("logout-button").addEventListener("click", () => { logout(); });
  $("subscribe-form").addEventListener("submit", onSubscribe);
  $("send-form").addEventListener("submit", onSend);
  for (const id of ["subscribe-queue", "send-queue"]) {
    $(id).addEventListener("input", () => renderQueueLabel(id));
  }
  $("send-message").addEventListener("keydown", (ev) => {
    // Enter sends, Shift+Enter adds a line (chat habit).
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("clear-log").addEventListener("click", () => { $("log").replaceChildren(); });
  renderSubscriptions(null);
  panes.push(...PANES.map(({ key, name }) => {
    const root = $(`pane-${key}`);
    const pane = { key, name, root, view: paneView(root), deviceId: null, device: null };
    pane.view.clear();
    root.querySelector(".pane-toggle").addEventListener("click", () => togglePane(pane));
    return pane;
  }));
  $("devices-open").addEventListener("click", openPanes);
  $("devices-close").addEventListener("click", closePanes);
  $("devices-remove").addEventListener("click", () => { removeDevices(); });
  renderDevicesButtons();
  renderWhoami();
  setState("offline", "Not connected");
  // Read-only view for debugging in the console (and the browser tests).
  window.wsmqDemo = { session };
}

// A module runs after the document is parsed (modules are deferred).
init();

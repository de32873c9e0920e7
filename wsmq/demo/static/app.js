// wsmq demo page: log in, connect (first-message auth, subprotocol wsmq.v1), subscribe,
// receive and acknowledge, send, refresh the token in-band, reconnect to any node.
// Plain ES2020, no build step, no network access beyond the wsmq nodes.
"use strict";

(() => {
  const SUBPROTOCOL = "wsmq.v1";
  // The server's rule (wsmq/protocol/names.py): QUEUES is the RSMQ registry key, reserved.
  const QNAME_RE = /^(?!QUEUES$)[A-Za-z0-9_-]{1,160}$/;
  const HEX_ID_RE = /^[0-9a-f]{24}$/;
  // What an error reply to /send or /subscribe means, in words (codes: docs/protocol.md).
  const ERROR_TEXT = {
    forbidden: "you may not use this queue",
    queue_not_found: "this queue does not exist",
    invalid_queue: "not a valid queue name",
    message_too_long: "the message is too long for this queue",
    too_many_subscriptions: "too many subscriptions on this connection",
    unavailable: "the node is busy: try again",
  };
  const MAX_LOG = 500;
  const MAX_EVENTS = 200;
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 8000;
  // Close codes (docs/protocol.md).
  const CLOSE = { NORMAL: 1000, GOING_AWAY: 1001, RESTART: 1012, AUTH_FAILED: 4401,
    EXPIRED: 4403, AUTH_TIMEOUT: 4408, RATE_LIMITED: 4429 };

  const $ = (id) => document.getElementById(id);

  const session = {
    nodes: [],
    nodeIndex: 0,
    ws: null,
    userName: null,
    userId: null,
    token: null,
    accessToken: null,
    expiresAt: 0, // epoch ms of the x-token's exp
    wanted: false, // true while logged in: keep a connection open
    attempt: 0,
    reconnectTimer: null,
    refreshTimer: null,
    refreshAt: 0,
    refreshing: null,
    subscriptions: new Map(), // qname -> "pending" | "active"
    pendingSends: [], // {queue, text} sent on this socket, waiting for "sent" or an error
    delivered: 0,
    authenticated: false,
    knownUsers: [],
    sharedQueue: null,
  };

  // ---------------------------------------------------------------------------------------
  // small helpers

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

  // The HTTP origin of a node's WebSocket URL: where /auth/* lives.
  function httpOrigin(wsUrl) {
    try {
      const u = new URL(wsUrl);
      u.protocol = u.protocol === "wss:" ? "https:" : "http:";
      return u.origin;
    } catch (_e) {
      return null;
    }
  }

  // Auth endpoints to try, best first: this page's own origin (no CORS needed), then the node
  // we are connected to, then the others.
  function authOrigins() {
    const out = [];
    const add = (o) => { if (o && !out.includes(o)) out.push(o); };
    if (window.location.protocol.startsWith("http")) add(window.location.origin);
    add(httpOrigin(session.nodes[session.nodeIndex % session.nodes.length] || ""));
    session.nodes.forEach((n) => add(httpOrigin(n)));
    return out;
  }

  function decodeJwtPayload(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const json = atob(part + "=".repeat((4 - (part.length % 4)) % 4));
      return JSON.parse(json);
    } catch (_e) {
      return {};
    }
  }

  function userIdFromToken(token) {
    const sub = String(decodeJwtPayload(token).sub || "");
    return sub.startsWith("users/") ? sub.slice("users/".length) : sub;
  }

  // A queue as people read it: a user's own queue is named by its 24-hex id.
  function queueLabel(qname) {
    if (qname && qname === session.userId) return "your inbox";
    const owner = (session.knownUsers || []).find((u) => u.id === qname);
    if (owner) return `${owner.userName}'s inbox`;
    if (HEX_ID_RE.test(qname)) return `${qname.slice(0, 6)}…${qname.slice(-4)}`;
    return qname;
  }

  // For the events list: the label and the exact name when they differ.
  function queueText(qname) {
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

  function chatBody(text) {
    return JSON.stringify({ from: session.userName || session.userId, text });
  }

  function errorText(frame) {
    return ERROR_TEXT[frame.code] || frame.detail || frame.code;
  }

  function showError(formId, text) {
    $(`${formId}-error`).textContent = text;
  }

  function timeText(ms) {
    const d = new Date(ms);
    return Number.isNaN(d.getTime()) ? "–" : d.toLocaleTimeString();
  }

  // ---------------------------------------------------------------------------------------
  // rendering

  function setState(state, text) {
    const el = $("state");
    el.dataset.state = state;
    $("state-text").textContent = text;
    document.body.dataset.state = state;
  }

  function event(kind, text) {
    const li = document.createElement("li");
    li.className = `ev ev-${kind}`;
    const t = document.createElement("time");
    t.textContent = new Date().toLocaleTimeString();
    const span = document.createElement("span");
    span.textContent = text;
    li.append(t, " ", span);
    const list = $("events");
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  }

  function renderSubscriptions() {
    const ul = $("subscriptions");
    ul.replaceChildren();
    for (const [qname, status] of session.subscriptions) {
      const li = document.createElement("li");
      li.className = `chip chip-${status}`;
      li.dataset.queue = qname;
      li.dataset.status = status;
      const name = document.createElement("span");
      name.className = "chip-name";
      name.textContent = queueLabel(qname);
      if (name.textContent !== qname) name.title = qname;
      const st = document.createElement("span");
      st.className = "chip-status";
      st.textContent = status === "active" ? "subscribed" : "pending";
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "chip-remove";
      btn.textContent = "×";
      btn.setAttribute("aria-label", `Unsubscribe from ${queueLabel(qname)}`);
      btn.addEventListener("click", () => unsubscribe(qname));
      li.append(name, " ", st, " ", btn);
      ul.append(li);
    }
    if (!session.subscriptions.size) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "None yet.";
      ul.append(li);
    }
  }

  function renderWhoami() {
    const box = $("whoami");
    box.hidden = !session.token;
    $("user-name-shown").textContent = session.userName || "–";
    $("user-id").textContent = session.userId || "–";
    $("token-exp").textContent = session.expiresAt ? timeText(session.expiresAt) : "–";
    $("logout-button").hidden = !session.token;
    $("login-button").textContent = session.token ? "Log in again" : "Log in and connect";
  }

  function addMessageRow(msg) {
    const li = document.createElement("li");
    li.className = "msg";
    li.dataset.id = msg.id;
    li.dataset.queue = msg.queue;
    li.dataset.rc = String(msg.rc);
    li.dataset.acked = "false";

    const meta = document.createElement("div");
    meta.className = "meta";
    const q = document.createElement("span");
    q.className = "queue";
    q.textContent = queueLabel(msg.queue);
    if (q.textContent !== msg.queue) q.title = msg.queue;
    const time = document.createElement("time");
    time.dateTime = new Date(msg.sent).toISOString();
    time.textContent = timeText(msg.sent);
    time.title = "sent";
    const rc = document.createElement("span");
    rc.className = msg.rc > 1 ? "rc redelivered" : "rc";
    rc.textContent = msg.rc > 1 ? `delivery ${msg.rc} (redelivered)` : `delivery ${msg.rc}`;
    const id = document.createElement("code");
    id.className = "id";
    id.textContent = msg.id;
    const status = document.createElement("span");
    status.className = "ack-status";
    status.textContent = "not acknowledged";
    meta.append(q, time, rc, id, status);

    const chat = parseChat(msg.message);
    const body = document.createElement("pre");
    body.className = "body";
    body.textContent = chat ? chat.text : msg.message;
    if (chat) {
      const from = document.createElement("span");
      from.className = "from";
      from.textContent = chat.from;
      from.title = "sender (as the sender wrote it)";
      meta.prepend(from);
      li.dataset.from = chat.from;
    }

    li.append(meta, body);
    if (!$("auto-ack").checked) {
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "ack";
      btn.textContent = "Ack";
      btn.setAttribute("aria-label", `Acknowledge message ${msg.id} from ${msg.queue}`);
      btn.addEventListener("click", () => {
        if (ack(msg.queue, msg.id)) {
          btn.disabled = true;
          status.textContent = "acknowledging…";
        }
      });
      li.append(btn);
    }
    const log = $("log");
    log.prepend(li);
    while (log.children.length > MAX_LOG) log.lastElementChild.remove();
    return li;
  }

  function markAcked(qname, id) {
    for (const li of $("log").querySelectorAll("li.msg")) {
      if (li.dataset.id === id && li.dataset.queue === qname) {
        li.dataset.acked = "true";
        li.querySelector(".ack-status").textContent = "acknowledged";
        const btn = li.querySelector("button.ack");
        if (btn) btn.remove();
      }
    }
  }

  // ---------------------------------------------------------------------------------------
  // HTTP: login, fresh tokens, logout

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
    const payload = decodeJwtPayload(data.token);
    session.expiresAt = payload.exp ? payload.exp * 1000 : Date.now() + (data.expiresIn || 900) * 1000;
    session.userId = userIdFromToken(data.token) || session.userId;
    cancelRefresh();
    scheduleRefresh();
    renderWhoami();
  }

  // Refresh at 3/4 of the token's lifetime (well before expiry, whatever the TTL), or sooner
  // when asked; a timer already due earlier is kept.
  function scheduleRefresh(delayMs) {
    const left = session.expiresAt - Date.now();
    const delay = Math.max(1000, delayMs === undefined ? left * 0.75 : delayMs);
    const at = Date.now() + delay;
    if (session.refreshAt && session.refreshAt <= at) return;
    clearTimeout(session.refreshTimer);
    session.refreshAt = at;
    session.refreshTimer = setTimeout(() => {
      session.refreshAt = 0;
      refreshToken().catch(() => {});
    }, delay);
  }

  function cancelRefresh() {
    clearTimeout(session.refreshTimer);
    session.refreshAt = 0;
  }

  // Get a fresh x-token with the access token, then extend the live connection in-band.
  function refreshToken() {
    if (session.refreshing) return session.refreshing;
    session.refreshing = (async () => {
      try {
        const data = await postJson(
          "/auth/token",
          { userId: session.userId, userName: session.userName },
          { "x-access-token": session.accessToken, "x-token": session.token },
        );
        acceptTokens(data);
        event("info", "x-token refreshed over HTTP");
        if (session.ws && session.ws.readyState === WebSocket.OPEN && session.authenticated) {
          session.ws.send(`/refresh ${session.token}`);
        } else if (session.wanted && !session.ws && !session.reconnectTimer) {
          scheduleReconnect(false); // closed for an expired token: back with the fresh one
        }
        return true;
      } catch (e) {
        event("error", `token refresh failed: ${e.message}`);
        if (e.status === 401 || e.status === 403) loggedOut("access revoked: log in again");
        else scheduleRetryRefresh();
        return false;
      } finally {
        session.refreshing = null;
      }
    })();
    return session.refreshing;
  }

  function scheduleRetryRefresh() {
    cancelRefresh();
    scheduleRefresh(3000);
  }

  async function login(ev) {
    ev.preventDefault();
    const nodes = parseNodes($("nodes").value);
    if (!nodes.length) {
      event("error", "give at least one ws:// or wss:// node URL");
      return;
    }
    session.nodes = nodes;
    const userName = $("user-name").value.trim();
    const password = $("password").value;
    showError("login", "");
    const before = [$("state").dataset.state, $("state-text").textContent];
    setState("connecting", "Logging in…");
    try {
      const data = await postJson("/auth/login", { userName, password });
      if (session.userName && session.userName !== userName) {
        closeSocket(CLOSE.NORMAL, "another user");
        clearUserState(); // nothing of the previous user's carries over
      }
      session.userName = userName;
      session.userId = null;
      acceptTokens(data);
      $("password").value = "";
      showError("login", "");
      event("info", `logged in as ${userName} (user id ${session.userId})`);
      prefillQueues();
      session.wanted = true;
      session.attempt = 0;
      closeSocket(CLOSE.NORMAL, "new login");
      connect();
    } catch (e) {
      setState(...before); // a failed attempt leaves a live connection as it was
      event("error", `login failed: ${e.message}`);
      showError("login", `Login failed: ${e.message}`);
    }
  }

  function prefillQueues() {
    if (!$("subscribe-queue").value && session.userId) $("subscribe-queue").value = session.userId;
    if (!$("send-queue").value) {
      const other = (session.knownUsers || []).find((u) => u.id !== session.userId);
      $("send-queue").value = other ? other.id : (session.sharedQueue || "");
    }
    renderQueueOptions();
  }

  // Suggestions for both queue fields, and the label under each (e.g. "bob's inbox").
  function renderQueueOptions() {
    const queues = [];
    if (session.userId) queues.push(session.userId);
    for (const u of session.knownUsers || []) if (!queues.includes(u.id)) queues.push(u.id);
    if (session.sharedQueue) queues.push(session.sharedQueue);
    $("queue-options").replaceChildren(...queues.map((q) => {
      const opt = document.createElement("option");
      opt.value = q;
      opt.label = queueLabel(q);
      return opt;
    }));
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
    session.userName = null;
    session.userId = null;
    session.subscriptions.clear();
    session.pendingSends = [];
    session.delivered = 0;
    $("node-url").textContent = "–";
    $("log").replaceChildren();
    $("events").replaceChildren();
    for (const id of ["subscribe-queue", "send-queue", "send-message", "password"]) {
      $(id).value = "";
    }
    for (const form of ["login", "subscribe", "send"]) showError(form, "");
    $("send-status-live").textContent = "";
    renderSubscriptions();
    renderQueueOptions();
  }

  async function logout() {
    const hadToken = session.accessToken;
    session.wanted = false;
    closeSocket(CLOSE.NORMAL, "logout");
    if (hadToken) {
      try {
        await postJson("/auth/logout", { userId: session.userId },
          { "x-access-token": session.accessToken, "x-token": session.token });
      } catch (_e) { /* the token is dropped locally either way */ }
    }
    $("user-name").value = "";
    loggedOut("logged out");
  }

  // Back to the login form with nothing of the user left on the page (the user name field is
  // kept after a revocation, to log in again).
  function loggedOut(why) {
    session.wanted = false;
    cancelRefresh();
    clearTimeout(session.reconnectTimer);
    session.reconnectTimer = null;
    closeSocket(CLOSE.NORMAL, "logged out");
    session.token = null;
    session.accessToken = null;
    session.expiresAt = 0;
    clearUserState();
    renderWhoami();
    setState("offline", `Not connected (${why})`);
    event("info", why);
  }

  // ---------------------------------------------------------------------------------------
  // WebSocket

  function currentNode() {
    return session.nodes[session.nodeIndex % session.nodes.length];
  }

  function closeSocket(code, reason) {
    const ws = session.ws;
    session.ws = null;
    session.authenticated = false;
    if (ws && ws.readyState <= WebSocket.OPEN) {
      try { ws.close(code, reason); } catch (_e) { /* already closing */ }
    }
  }

  function connect() {
    clearTimeout(session.reconnectTimer);
    session.reconnectTimer = null;
    if (!session.wanted || !session.token) return;
    const url = currentNode();
    setState("connecting", `Connecting to ${url}…`);
    let ws;
    try {
      ws = new WebSocket(url, [SUBPROTOCOL]);
    } catch (e) {
      event("error", `cannot open ${url}: ${e.message}`);
      scheduleReconnect(true);
      return;
    }
    session.ws = ws;
    session.authenticated = false;
    ws.onopen = () => {
      if (ws !== session.ws) return;
      setState("authenticating", `Authenticating with ${url}…`);
      // Browsers cannot set headers on a WebSocket: authenticate with the first message.
      ws.send(`/auth ${session.token} ${session.accessToken}`);
    };
    ws.onmessage = (ev) => {
      if (ws !== session.ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch (_e) {
        event("error", "unreadable frame from the server");
        return;
      }
      onFrame(ws, url, frame);
    };
    ws.onclose = (ev) => {
      if (ws !== session.ws) return;
      session.ws = null;
      session.authenticated = false;
      onClose(url, ev);
    };
    ws.onerror = () => { /* always followed by close, handled there */ };
  }

  function onFrame(ws, url, frame) {
    switch (frame.type) {
      case "authenticated":
        session.authenticated = true;
        session.attempt = 0;
        if (frame.user) session.userId = frame.user;
        if (frame.exp) session.expiresAt = frame.exp * 1000;
        $("node-url").textContent = url;
        renderWhoami();
        setState("connected", `Connected to ${url} as ${session.userName || session.userId}`);
        event("info", `connected to ${url}`);
        // Subscriptions belong to a connection: restore them after every (re)connect.
        for (const q of session.subscriptions.keys()) {
          session.subscriptions.set(q, "pending");
          ws.send(`/subscribe/${q}`);
        }
        renderSubscriptions();
        break;
      case "subscribed":
        session.subscriptions.set(frame.queue, "active");
        renderSubscriptions();
        event("info", `subscribed to ${queueText(frame.queue)}`);
        break;
      case "unsubscribed":
        event("info", `unsubscribed from ${queueText(frame.queue)}`);
        break;
      case "message": {
        session.delivered += 1;
        addMessageRow(frame);
        if ($("auto-ack").checked) ack(frame.queue, frame.id);
        break;
      }
      case "acked":
        markAcked(frame.queue, frame.id);
        break;
      case "sent": {
        event("info", `sent to ${queueText(frame.queue)}, id ${frame.id}`);
        const sent = takePendingSend(frame.queue);
        // Only now is the message safe in Redis: empty the box, unless it was edited since.
        if (sent && $("send-message").value === sent.text) $("send-message").value = "";
        showError("send", "");
        $("send-status-live").textContent = `Sent to ${queueLabel(frame.queue)}.`;
        break;
      }
      case "expiring":
        // Halfway to the deadline: a short TTL does not turn into a refresh storm.
        event("info", `token expires in ${frame.seconds} s`);
        scheduleRefresh((frame.seconds * 1000) / 2);
        break;
      case "refreshed":
        if (frame.exp) session.expiresAt = frame.exp * 1000;
        renderWhoami();
        event("info", "connection extended with the fresh token");
        break;
      case "error":
        onErrorFrame(frame);
        break;
      default:
        if ("message" in frame) {
          // A legacy frame ({"message": body}): only without the subprotocol.
          event("info", `legacy message: ${frame.message}`);
        } else {
          event("info", `frame: ${JSON.stringify(frame)}`);
        }
    }
  }

  function takePendingSend(qname) {
    const i = session.pendingSends.findIndex((p) => p.queue === qname);
    return i < 0 ? null : session.pendingSends.splice(i, 1)[0];
  }

  function onErrorFrame(frame) {
    const where = frame.queue ? ` on ${queueText(frame.queue)}` : "";
    event("error", `${frame.code}${where}: ${frame.detail || ""}`);
    // An error names the queue, not the command: a pending subscription to that queue takes
    // it first, else a send waiting for its reply. Acks carry an id.
    const subscribing = frame.queue && session.subscriptions.get(frame.queue) === "pending";
    if (frame.queue && !frame.id && subscribing && frame.code !== "message_too_long") {
      session.subscriptions.delete(frame.queue);
      renderSubscriptions();
      showError("subscribe", `Not subscribed to ${queueLabel(frame.queue)}: ${errorText(frame)}`);
    } else if (frame.queue && !frame.id && takePendingSend(frame.queue)) {
      showError("send", `Not sent to ${queueLabel(frame.queue)}: ${errorText(frame)}. `
        + "Your message is still in the box.");
    }
    if (frame.id && frame.queue) {
      for (const li of $("log").querySelectorAll("li.msg")) {
        if (li.dataset.id === frame.id) {
          li.querySelector(".ack-status").textContent = `ack failed: ${frame.code}`;
          const btn = li.querySelector("button.ack");
          if (btn) btn.disabled = false;
        }
      }
    }
  }

  function onClose(url, ev) {
    const why = ev.reason ? `${ev.code} ${ev.reason}` : String(ev.code);
    event("warn", `disconnected from ${url} (${why})`);
    if (session.pendingSends.length) {
      // No reply came: the message may or may not be queued, so it stays in the box.
      session.pendingSends = [];
      showError("send", "The connection closed before the node confirmed your message; "
        + "it is still in the box: send it again once connected.");
    }
    if (!session.wanted) {
      setState("offline", "Not connected");
      return;
    }
    for (const q of session.subscriptions.keys()) session.subscriptions.set(q, "pending");
    renderSubscriptions();
    if (ev.code === CLOSE.AUTH_FAILED || ev.code === CLOSE.EXPIRED) {
      // Expired or revoked: a fresh x-token tells which. Revoked means log in again.
      setState("reconnecting", "Token rejected: getting a fresh one…");
      refreshToken().catch(() => {}); // reconnects once it has one
      return;
    }
    // 1001/1012: the node is going away; try the next one at once. Otherwise back off.
    scheduleReconnect(ev.code !== CLOSE.GOING_AWAY && ev.code !== CLOSE.RESTART);
  }

  function scheduleReconnect(backoff) {
    clearTimeout(session.reconnectTimer);
    if (!session.wanted) return;
    session.nodeIndex = (session.nodeIndex + 1) % session.nodes.length;
    const base = backoff ? Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** session.attempt) : 0;
    const delay = Math.round(base * (0.5 + Math.random() / 2)); // jitter: no thundering herd
    session.attempt += 1;
    setState("reconnecting", `Reconnecting to ${currentNode()} in ${(delay / 1000).toFixed(1)} s…`);
    session.reconnectTimer = setTimeout(connect, delay);
  }

  function connected() {
    const ws = session.ws;
    return Boolean(ws && ws.readyState === WebSocket.OPEN && session.authenticated);
  }

  function sendFrame(text) {
    const ws = session.ws;
    if (!connected()) {
      event("error", "not connected");
      return false;
    }
    ws.send(text);
    return true;
  }

  function subscribe(qname) {
    if (!QNAME_RE.test(qname)) {
      showError("subscribe", "Queue names use letters, digits, _ and - (up to 160); QUEUES is reserved.");
      return;
    }
    showError("subscribe", "");
    if (session.subscriptions.get(qname) === "active") return;
    session.subscriptions.set(qname, "pending");
    renderSubscriptions();
    if (session.authenticated) sendFrame(`/subscribe/${qname}`);
  }

  function unsubscribe(qname) {
    session.subscriptions.delete(qname);
    renderSubscriptions();
    if (session.authenticated) sendFrame(`/unsubscribe/${qname}`);
  }

  function ack(qname, id) {
    return sendFrame(`/ack/${qname}/${id}`);
  }

  // ---------------------------------------------------------------------------------------
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
      $("login-hint").textContent =
        `Demo users: ${names} (passwords are printed by wsmq demo).`;
      session.knownUsers = config.users;
    }
    if (config.sharedQueue) session.sharedQueue = config.sharedQueue;
    renderQueueOptions();
  }

  function init() {
    session.nodes = defaultNodes();
    $("nodes").value = session.nodes.join("\n");
    applyConfig().catch(() => {});

    const live = document.createElement("p");
    live.id = "send-status-live";
    live.className = "visually-hidden";
    live.setAttribute("role", "status");
    $("send-form").append(live);

    $("login-form").addEventListener("submit", login);
    $("logout-button").addEventListener("click", () => { logout(); });
    $("subscribe-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      subscribe($("subscribe-queue").value.trim());
    });
    $("send-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const qname = $("send-queue").value.trim();
      const text = $("send-message").value;
      if (!QNAME_RE.test(qname)) {
        showError("send", "Queue names use letters, digits, _ and - (up to 160); QUEUES is reserved.");
        return;
      }
      if (!connected()) {
        showError("send", "Not connected: your message is still in the box; send it once "
          + "the page is connected.");
        return;
      }
      showError("send", "");
      const body = $("send-as-chat").checked ? chatBody(text) : text;
      // The box is emptied on the node's "sent" reply, not now: a refusal keeps the text.
      session.pendingSends.push({ queue: qname, text });
      sendFrame(`/send/${qname} ${body}`);
    });
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
    renderSubscriptions();
    renderWhoami();
    setState("offline", "Not connected");
    // Read-only view for debugging in the console.
    window.wsmqDemo = { session };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

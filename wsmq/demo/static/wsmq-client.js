// wsmq-client: the JavaScript client of wsmq (browsers and Node >= 18, no dependencies).
//
// One self-contained ES module on purpose: a page can serve this very file as-is
// (<script type="module">), no bundler, no import map. Reference: docs/client-js.md;
// the wire protocol: docs/protocol.md. Its model is the Python client's (wsmq/client):
// nodes round robin, a reconnect policy by close code, subscriptions renewed after every
// reconnect, in-band token refresh on `expiring`, acks coalesced per event-loop turn into
// bulk `/ack/<q>/<id>,<id>` frames, optional bounded dedupe of redeliveries, transient
// failures (a subscribe refused `unavailable`, a failing tokens()) retried with backoff.

export const SUBPROTOCOL = "wsmq.v1";
const MAX_ACK_IDS = 1000; // the server's limit of ids in one bulk /ack
const MAX_NACK_DELAY = 9999999;
const CLOSE_FLUSH_MS = 2000; // how long close() waits for the socket's close handshake
const ACKED = -1; // dedupe state of an id the application acked
const QNAME = /^[A-Za-z0-9_-]{1,160}$/;
const DEVICE = /^[A-Za-z0-9_-]{1,64}$/;
// At least this long between two `/refresh` (ms): a server that warns again right after every
// refresh (tokens shorter than its warning) must not make the client refresh in a loop.
export const MIN_REFRESH_INTERVAL = 1000;
// Subscribe refusals that say "not now" (Redis down, the node stopping): retried with backoff
// on the same connection. Any other code (forbidden, invalid_queue, too_many_subscriptions...)
// would be refused again: it ends the subscription.
const TRANSIENT_SUBSCRIBE_ERRORS = new Set(["unavailable"]);
const TOKEN = /^[\x21-\x7e]{1,8192}$/;

// --- errors ------------------------------------------------------------------------------------

/** Base of every error the client raises; `code` is a stable machine-readable name. */
export class ClientError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
    this.code = "client_error";
    this.fatal = false;
  }
}

/** The server refused the credentials, even fresh ones from tokens(); ends the client. */
export class AuthenticationFailed extends ClientError {
  constructor(message, options) {
    super(message, options);
    this.code = "authentication_failed";
  }
}

/** Throw (or reject with) it from tokens() when there will be no tokens (logged out, the
 * refresh token refused): the client ends with AuthenticationFailed. Anything else tokens()
 * throws is transient: an `error` event, then a retry after the backoff. */
export class UnauthorizedError extends ClientError {
  constructor(message = "unauthorized", options) {
    super(message, options);
    this.code = "unauthorized";
  }
}

/** tokens() threw or rejected (not with UnauthorizedError): a non-fatal `error` event; the
 * client calls it again after the backoff. `cause` is what it threw. */
export class TokensFailed extends ClientError {
  constructor(cause) {
    super(`tokens() failed: ${cause?.message ?? cause}`, { cause });
    this.code = "tokens_failed";
  }
}

/** A close the client must not retry (1002, 1007, 1008, 1009), or a command whose
 * connection closed before its reply. `closeCode`/`reason` say which close. */
export class ConnectionClosed extends ClientError {
  constructor(message, closeCode = null, reason = "") {
    super(message);
    this.code = "connection_closed";
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

/** The application closed the client: a command waiting for a connection or a reply (or one
 * made after close()) ends with it. Nothing to retry. */
export class ClientClosed extends ConnectionClosed {
  constructor(message = "the client is closed") {
    super(message);
    this.code = "client_closed";
  }
}

/** The server answered a command with an `error` frame (`errorCode`: forbidden, ...). */
export class CommandFailed extends ClientError {
  constructor(errorCode, detail, queue = null) {
    super(`${errorCode}: ${detail}`);
    this.code = "command_failed";
    this.errorCode = errorCode;
    this.detail = detail;
    this.queue = queue;
  }
}

/** A subscription's handler threw; `cause` is what it threw, `delivery` what it was given. */
export class HandlerFailed extends ClientError {
  constructor(delivery, cause) {
    super(`handler of ${delivery.queue} failed: ${cause instanceof Error ? cause.message : cause}`, { cause });
    this.code = "handler_failed";
    this.delivery = delivery;
  }
}

// --- backoff and the close-code policy ---------------------------------------------------------

/** Delays base, 2·base, 4·base ... up to cap (ms), each with equal jitter: in [d/2, d]. */
export class Backoff {
  constructor({ base = 100, cap = 10000, random = Math.random } = {}) {
    if (!(base > 0) || !(cap >= base)) throw new ClientError("backoff needs 0 < base <= cap");
    this.base = base;
    this.cap = cap;
    this.random = random;
    this.attempt = 0;
  }

  next() {
    const ceiling = Math.min(this.cap, this.base * 2 ** Math.min(this.attempt, 32));
    this.attempt += 1;
    return ceiling / 2 + (this.random() * ceiling) / 2;
  }

  reset() {
    this.attempt = 0;
  }
}

const NEXT_NODE_NOW = "next_node_now";
const NEW_TOKENS = "new_tokens";
const BACK_OFF = "back_off";
const FATAL = "fatal";
const POLICY = new Map([
  [1001, NEXT_NODE_NOW], [1012, NEXT_NODE_NOW],
  [4401, NEW_TOKENS], [4403, NEW_TOKENS],
  [4429, BACK_OFF],
  [1002, FATAL], [1007, FATAL], [1008, FATAL], [1009, FATAL],
]);

/** What the client does after close `code`: anything unlisted (1006, 4408...) backs off. */
export function afterClose(code) {
  return POLICY.get(code) ?? BACK_OFF;
}

function isValidQueue(name) {
  return typeof name === "string" && QNAME.test(name) && name !== "QUEUES";
}

function isValidDevice(id) {
  return typeof id === "string" && DEVICE.test(id);
}

// The `ws` package (Node) takes handshake headers; a browser's WebSocket (or Node's global
// one) cannot, so those authenticate with the first frame instead.
function takesHeaders(WS) {
  const proto = WS && WS.prototype;
  return !!proto && typeof proto.terminate === "function" && typeof proto.on === "function";
}

const later = globalThis.setImmediate
  ? (fn) => globalThis.setImmediate(fn)
  : (fn) => setTimeout(fn, 0);

// --- deliveries and subscriptions --------------------------------------------------------------

/** One delivered message. Settle it with ack(), nack() or extend(). */
export class Delivery {
  #client;
  constructor(client, queue, id, rc, sent, message, generation) {
    this.#client = client;
    this.queue = queue;
    this.id = id;
    this.rc = rc;
    this.sent = sent;
    this.message = message;
    this.generation = generation; // which connection of the client delivered it
    Object.freeze(this);
  }

  /** Delete the message; see docs/client-js.md for what the promise means. */
  ack(options = {}) {
    return this.#client._ack(this, options.confirm === true);
  }

  /** Give it back: visible again at once, or after `delay` whole seconds. */
  nack(delay) {
    return this.#client._nack(this, delay);
  }

  /** Keep it hidden `seconds` (whole) from now; it stays held by this client. */
  extend(seconds) {
    return this.#client._extend(this, seconds);
  }
}

/** The deliveries of one queue handed to its handler, `concurrency` at a time. */
export class Subscription {
  #client;
  #handler;
  #concurrency;
  #buffer = [];
  #running = 0;
  #resolveReady;
  #rejectReady;
  #settledReady = false;

  constructor(client, queue, handler, concurrency, device = null) {
    this.#client = client;
    this.queue = queue;
    this.device = device; // the device it subscribes as (null: a plain subscription)
    this.subscribed = false; // whether a node answered `subscribed` at least once
    this._retries = null; // the client's Backoff of its retries after `unavailable`
    this.#handler = handler;
    this.#concurrency = concurrency;
    this.active = true;
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    this.ready.catch(() => {}); // also surfaced as an `error` event: never an unhandled rejection
  }

  /** Stop receiving: not renewed after reconnects; its unacked messages are released. */
  unsubscribe() {
    return this.#client._unsubscribe(this);
  }

  _subscribed() {
    this.subscribed = true;
    if (!this.#settledReady) {
      this.#settledReady = true;
      this.#resolveReady();
    }
  }

  _end(error) {
    this.active = false;
    this.#buffer.length = 0;
    if (!this.#settledReady) {
      this.#settledReady = true;
      if (error) this.#rejectReady(error);
      else this.#resolveReady();
    }
  }

  _feed(delivery) {
    if (!this.active || !this.#handler) return;
    this.#buffer.push(delivery);
    this._pump();
  }

  // Deliveries of a connection that closed and not handed out yet: the server releases them,
  // they come again. Returns them so the client forgets their ids.
  _dropStale(generation) {
    const stale = this.#buffer.filter((d) => d.generation === generation);
    this.#buffer = this.#buffer.filter((d) => d.generation !== generation);
    return stale;
  }

  _pump() {
    while (this.active && this.#running < this.#concurrency && this.#buffer.length > 0) {
      const delivery = this.#buffer.shift();
      this.#running += 1;
      this.#run(delivery).finally(() => {
        this.#running -= 1;
        this._pump();
      });
    }
  }

  async #run(delivery) {
    try {
      await this.#handler(delivery);
    } catch (error) {
      this.#client._handlerFailed(delivery, error);
    }
  }
}

// --- the client --------------------------------------------------------------------------------

/**
 * A client of the nodes `urls`. Connects at once; `await client.ready` (or `send`) to wait
 * for the first connection. See docs/client-js.md.
 */
export class Client {
  #nodes;
  #tokenSource;
  #tokens = null;
  #legacy;
  #dedupe;
  #backoff;
  #WebSocket;
  #headerAuth;
  #connectTimeout;
  #listeners = new Map();
  #subs = new Map(); // queue -> Subscription
  #ws = null; // the open, authenticated socket
  #generation = 0;
  #pending = new Map(); // queue -> [{kind: "send"|"subscribe", resolve, reject}]
  #ops = new Map(); // `${queue}/${id}` -> [{kind: "ack"|"nack"|"extend", resolve}]
  #acks = new Map(); // queue -> ids to ack in the next flush
  #flushScheduled = false;
  #seen = new Map(); // queue -> Map(id -> generation holding it, or ACKED)
  #waiters = []; // {resolve, reject} waiting for a connection
  #closing = false;
  #fatal = null;
  #wake = null; // ends the current backoff sleep early (close())
  #attemptSocket = null;
  #node = null; // the node of the open socket
  #refreshing = null; // the socket a renewal (tokens() then /refresh) is in flight for
  #lastRefresh = -Infinity; // performance.now() of the last /refresh sent
  #pendingFatal = null; // ends the client once the current socket has closed
  #timers = new Set(); // retry timers of subscriptions and renewals
  #loop;

  constructor(urls, options = {}) {
    const list = typeof urls === "string" ? [urls] : Array.from(urls ?? []);
    if (list.length === 0) throw new ClientError("connect() needs at least one node URL");
    if (typeof options.tokens !== "function") {
      throw new ClientError("connect() needs options.tokens: async () => [xToken, accessToken]");
    }
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== "function") {
      throw new ClientError(
        "no WebSocket: pass options.WebSocket (in Node < 22: import WebSocket from \"ws\")",
      );
    }
    if (options.shuffle !== false) {
      for (let i = list.length - 1; i > 0; i -= 1) {
        const j = Math.floor(Math.random() * (i + 1));
        [list[i], list[j]] = [list[j], list[i]];
      }
    }
    const auth = options.auth ?? "auto";
    if (!["auto", "headers", "frame"].includes(auth)) {
      throw new ClientError(`auth must be "auto", "headers" or "frame", not ${auth}`);
    }
    const dedupe = options.dedupe ?? 0;
    if (!Number.isInteger(dedupe) || dedupe < 0) throw new ClientError("dedupe must be an integer >= 0");
    const connectTimeout = options.connectTimeout ?? 10000;
    if (!(connectTimeout > 0)) throw new ClientError("connectTimeout must be > 0 (ms)");
    if (!list.every((url) => typeof url === "string" && /^wss?:\/\//i.test(url))) {
      throw new ClientError("node URLs must be ws:// or wss:// strings");
    }
    this.#nodes = list;
    this.#tokenSource = options.tokens;
    this.#legacy = options.legacy === true;
    this.#dedupe = dedupe;
    this.#backoff = options.backoff instanceof Backoff ? options.backoff : new Backoff(options.backoff);
    this.#WebSocket = WS;
    this.#headerAuth = auth === "headers" || (auth === "auto" && takesHeaders(WS));
    this.#connectTimeout = connectTimeout;
    this.ready = new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.ready.catch(() => {}); // the fatal error is also an `error` event
    // Started in a microtask: listeners and subscriptions added right after connect() see
    // the first `connecting` event and go out with the first connection.
    this.#loop = Promise.resolve().then(() => this.#run());
  }

  /** Whether a socket is open (and authenticated) right now. */
  get connected() {
    return this.#ws !== null;
  }

  /** The error that ended the client, or null. */
  get error() {
    return this.#fatal;
  }

  /** Whether the handshake carries the tokens as headers (else: first frame `/auth`). */
  get headerAuth() {
    return this.#headerAuth;
  }

  // --- events ---------------------------------------------------------------------------------

  /** Listen to `event`; returns a function that removes the listener. */
  on(event, listener) {
    if (typeof listener !== "function") throw new ClientError("a listener must be a function");
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }

  #emit(event, ...args) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        // A listener's bug must not break the connection loop; report it unless it is the
        // error listener itself (no loop).
        if (event !== "error") this.#emit("error", error);
      }
    }
  }

  // --- commands -------------------------------------------------------------------------------

  /** Receive `queue`: `handler(delivery)` is called per message (renewed after reconnects). */
  subscribe(queue, handler, options = {}) {
    if (this.#fatal) throw this.#fatal;
    if (this.#closing) throw new ClientClosed();
    if (!isValidQueue(queue)) throw new ClientError(`invalid queue name ${JSON.stringify(queue)}`);
    const device = options.device ?? null;
    if (device !== null && !isValidDevice(device)) {
      throw new ClientError(`invalid device id ${JSON.stringify(device)}`);
    }
    if (handler !== undefined && typeof handler !== "function") {
      throw new ClientError("the handler must be a function");
    }
    if (this.#subs.has(queue)) throw new ClientError(`already subscribed to ${queue}`);
    if (this.#legacy && this.#subs.size > 0) {
      throw new ClientError("legacy deliveries carry no queue name: one subscription only");
    }
    const concurrency = options.concurrency ?? 1;
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new ClientError("concurrency must be a positive integer");
    }
    const sub = new Subscription(this, queue, handler, concurrency, device);
    this.#subs.set(queue, sub);
    if (this.#ws) this.#sendSubscribe(this.#ws, sub);
    return sub;
  }

  /** `/send/<queue> <message>`; resolves with the new message's id (waits for a connection). */
  async send(queue, message) {
    if (this.#legacy) throw new ClientError("send needs the wsmq.v1 protocol (legacy mode is read-only)");
    if (!isValidQueue(queue)) throw new ClientError(`invalid queue name ${JSON.stringify(queue)}`);
    if (typeof message !== "string") throw new ClientError("the message must be a string");
    const ws = await this.#waitConnected();
    return new Promise((resolve, reject) => {
      this.#pendingFor(queue).push({ kind: "send", resolve, reject });
      if (!this.#write(ws, `/send/${queue} ${message}`)) {
        this.#pendingFor(queue).pop();
        reject(new ConnectionClosed("the connection closed before the send"));
      }
    });
  }

  /** `/leave/<queue> device=<device>`: remove that device's inbox of `queue` now, its messages
   * with it; resolves true if there was one. This client's subscription to `queue` as that
   * device ends first (the server unsubscribes it) and is not renewed. */
  async leave(queue, device) {
    if (this.#legacy) throw new ClientError("leave needs the wsmq.v1 protocol (legacy mode is read-only)");
    if (!isValidQueue(queue)) throw new ClientError(`invalid queue name ${JSON.stringify(queue)}`);
    if (!isValidDevice(device)) throw new ClientError(`invalid device id ${JSON.stringify(device)}`);
    const sub = this.#subs.get(queue);
    if (sub && sub.device === device) this.#drop(sub);
    const ws = await this.#waitConnected();
    return new Promise((resolve, reject) => {
      this.#pendingFor(queue).push({ kind: "leave", resolve, reject });
      if (!this.#write(ws, `/leave/${queue} device=${device}`)) {
        this.#pendingFor(queue).pop();
        reject(new ConnectionClosed("the connection closed before the leave"));
      }
    });
  }

  /** Stop: acks queued in this turn are still sent, the socket closes, nothing reconnects. */
  async close() {
    if (this.#closing) return this.#loop;
    this.#closing = true;
    this.#flushAcks();
    this.#wake?.();
    const socket = this.#attemptSocket;
    if (socket) {
      try {
        socket.close(1000, "client closing");
      } catch {
        // already closing
      }
    }
    // Bounded: a peer that never answers the close handshake (or a tokens() call that never
    // returns) must not hold close() up; the `ws` package's socket is then dropped at once.
    let timer;
    const gaveUp = new Promise((resolve) => {
      timer = setTimeout(() => resolve(true), CLOSE_FLUSH_MS);
    });
    const late = await Promise.race([this.#loop.then(() => false), gaveUp]);
    clearTimeout(timer);
    if (late && socket && typeof socket.terminate === "function") socket.terminate();
  }

  // --- the connection loop --------------------------------------------------------------------

  async #run() {
    let attempt = 0;
    let authStrikes = 0;
    let goingAway = 0; // 1001/1012 closes in a row without a working connection
    try {
      while (!this.#closing) {
        const node = this.#nodes[attempt % this.#nodes.length];
        attempt += 1;
        this.#emit("connecting", node);
        const fresh = this.#tokens === null;
        if (fresh) this.#tokens = await this.#fetchTokens();
        if (this.#closing) break;
        const out = await this.#connectOnce(node);
        this.#emit("disconnected", out.code, out.reason, node);
        if (this.#closing) break;
        if (out.fatal) throw out.fatal;
        if (this.#pendingFatal) throw this.#pendingFatal;
        if (out.authenticated) authStrikes = 0;
        if (out.healthy) {
          this.#backoff.reset();
          goingAway = 0;
        }
        if (out.httpStatus === 401 || out.httpStatus === 403) {
          this.#tokens = null;
          if (fresh) throw new AuthenticationFailed(`${node}: HTTP ${out.httpStatus} with fresh tokens`);
          attempt -= 1; // the same node again, with fresh tokens
          continue;
        }
        let policy = out.httpStatus ? BACK_OFF : afterClose(out.code);
        if (policy === NEXT_NODE_NOW) {
          goingAway += 1;
          // A full round of nodes going away without one working connection: back off.
          if (goingAway >= this.#nodes.length) policy = BACK_OFF;
        }
        if (policy === NEW_TOKENS) {
          authStrikes += 1;
          if (authStrikes > 1) {
            throw new AuthenticationFailed(`${node}: closed ${out.code} ${out.reason} with fresh tokens`);
          }
          this.#tokens = null;
        } else if (policy === FATAL) {
          throw new ConnectionClosed(`${node}: closed ${out.code} ${out.reason}`, out.code, out.reason);
        } else if (policy === BACK_OFF) {
          const delay = this.#backoff.next();
          this.#emit("reconnecting", delay, out.code);
          await this.#sleep(delay);
        }
      }
    } catch (error) {
      if (!this.#closing) this.#fail(error instanceof ClientError ? error : new ClientError(String(error?.message ?? error), { cause: error }));
    } finally {
      this.#shutdown();
    }
  }

  // tokens() until it answers: a failure is an `error` event and a backoff; only
  // UnauthorizedError (or a malformed answer) ends the client. Null if closed meanwhile.
  async #fetchTokens() {
    for (;;) {
      try {
        return await this.#callTokens();
      } catch (error) {
        if (!(error instanceof TokensFailed)) throw error;
        this.#emit("error", error);
        const delay = this.#backoff.next();
        this.#emit("reconnecting", delay, 0);
        await this.#sleep(delay);
        if (this.#closing) return null;
      }
    }
  }

  async #callTokens() {
    let pair;
    try {
      pair = await this.#tokenSource();
    } catch (error) {
      if (error instanceof UnauthorizedError) {
        throw new AuthenticationFailed(`tokens() refused: ${error.message}`, { cause: error });
      }
      throw new TokensFailed(error);
    }
    // Printable ASCII without spaces, as the server's /auth and /refresh frames require.
    if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((t) => typeof t === "string" && TOKEN.test(t))) {
      throw new AuthenticationFailed("tokens() must resolve to [xToken, accessToken]: two non-empty strings of printable ASCII without spaces");
    }
    return pair;
  }

  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    }).finally(() => {
      this.#wake = null;
    });
  }

  // One connection attempt, from the handshake to the close:
  // {code, reason, httpStatus, authenticated, healthy, fatal}.
  #connectOnce(node) {
    return new Promise((resolve) => {
      const [xToken, accessToken] = this.#tokens;
      const protocols = this.#legacy ? [] : [SUBPROTOCOL];
      const out = { code: 1006, reason: "", httpStatus: 0, authenticated: false, healthy: false, fatal: null };
      let socket;
      try {
        socket = this.#headerAuth
          ? new this.#WebSocket(node, protocols, { headers: { "x-token": xToken, "x-access-token": accessToken } })
          : new this.#WebSocket(node, protocols);
      } catch (error) {
        // e.g. a malformed URL: no retry can fix it
        out.fatal = new ClientError(`cannot connect to ${node}: ${error?.message ?? error}`, { cause: error });
        resolve(out);
        return;
      }
      this.#attemptSocket = socket;
      let ready = false;
      const timer = setTimeout(() => {
        out.reason = "connect timeout";
        try {
          socket.close();
        } catch {
          // not open yet in some implementations: the close event follows anyway
        }
      }, this.#connectTimeout);
      const becomeReady = () => {
        clearTimeout(timer);
        ready = true;
        out.authenticated = true;
        this.#opened(socket, node);
      };
      socket.addEventListener("open", () => {
        if (this.#closing) {
          socket.close(1000, "client closing");
          return;
        }
        if (!this.#legacy && socket.protocol !== SUBPROTOCOL) {
          out.fatal = new ClientError(`${node} did not accept the ${SUBPROTOCOL} subprotocol`);
          socket.close(1000, "subprotocol");
          return;
        }
        if (this.#headerAuth) {
          becomeReady(); // the handshake itself verified the tokens
        } else {
          this.#write(socket, `/auth ${xToken} ${accessToken}`);
          // Legacy mode has no `authenticated` reply: frames after /auth wait for it server-side.
          if (this.#legacy) becomeReady();
        }
      });
      socket.addEventListener("message", (event) => {
        const text = typeof event.data === "string" ? event.data : String(event.data);
        let frame;
        try {
          frame = JSON.parse(text);
        } catch {
          return; // not a server frame: ignored, as frames of newer servers are
        }
        if (frame === null || typeof frame !== "object") return;
        if (!ready) {
          if (frame.type === "authenticated") {
            out.healthy = true;
            becomeReady();
          }
          return;
        }
        if (this.#onFrame(socket, frame)) out.healthy = true;
      });
      socket.addEventListener("error", (event) => {
        const message = String(event?.message ?? event?.error?.message ?? "");
        const status = /Unexpected server response: (\d{3})/.exec(message);
        if (status) out.httpStatus = Number(status[1]);
        if (!this.#legacy && /Server sent (no|an invalid) subprotocol/.test(message)) {
          // `ws` refuses such a handshake itself (a browser does too, but says nothing).
          out.fatal = new ClientError(`${node} did not accept the ${SUBPROTOCOL} subprotocol`);
        }
        if (!out.reason) out.reason = status ? `HTTP ${status[1]}` : message;
      });
      socket.addEventListener("close", (event) => {
        clearTimeout(timer);
        out.code = event.code;
        if (event.reason) out.reason = String(event.reason);
        if (this.#attemptSocket === socket) this.#attemptSocket = null;
        if (ready) this.#lost(socket);
        resolve(out);
      });
    });
  }

  #opened(socket, node) {
    this.#generation += 1;
    this.#ws = socket;
    this.#node = node;
    this.#emit("connected", node);
    for (const sub of this.#subs.values()) this.#sendSubscribe(socket, sub);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  #lost(socket) {
    if (this.#ws !== socket) return;
    this.#ws = null;
    const lost = this.#closing
      ? new ClientClosed("the client closed before the reply")
      : new ConnectionClosed("the connection closed before the reply");
    for (const queue of this.#pending.keys()) {
      for (const command of this.#pending.get(queue)) command.reject?.(lost);
    }
    this.#pending.clear();
    this.#resolveAllOps(false);
    this.#acks.clear();
    for (const sub of this.#subs.values()) {
      for (const delivery of sub._dropStale(this.#generation)) this.#forget(delivery.queue, delivery.id);
    }
  }

  #fail(error) {
    error.fatal = true;
    this.#fatal = error;
    this.#emit("error", error);
  }

  #shutdown() {
    const error = this.#fatal ?? new ClientClosed();
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const waiter of this.#waiters) waiter.reject(error);
    this.#waiters = [];
    for (const queue of this.#pending.keys()) {
      for (const command of this.#pending.get(queue)) command.reject?.(error);
    }
    this.#pending.clear();
    this.#resolveAllOps(false);
    this.#acks.clear();
    for (const sub of this.#subs.values()) sub._end(this.#fatal);
    this.#subs.clear();
    this.#closing = true;
    const socket = this.#attemptSocket ?? this.#ws;
    if (socket) {
      try {
        socket.close(1000, "client closing");
      } catch {
        // already closed
      }
    }
  }

  #waitConnected() {
    if (this.#fatal) return Promise.reject(this.#fatal);
    if (this.#closing) return Promise.reject(new ClientClosed());
    if (this.#ws) return Promise.resolve(this.#ws);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject })).then(
      () => this.#ws ?? this.#waitConnected(),
    );
  }

  #write(socket, text) {
    if (socket.readyState !== 1) return false;
    try {
      socket.send(text);
      return true;
    } catch {
      return false;
    }
  }

  #pendingFor(queue) {
    if (!this.#pending.has(queue)) this.#pending.set(queue, []);
    return this.#pending.get(queue);
  }

  #sendSubscribe(socket, sub) {
    if (!this.#legacy) this.#pendingFor(sub.queue).push({ kind: "subscribe", sub });
    this.#write(socket, `/subscribe/${sub.queue}${sub.device ? ` device=${sub.device}` : ""}`);
    if (this.#legacy) this.#subscribed(sub); // legacy sends no `subscribed`
  }

  #subscribed(sub) {
    sub._retries = null;
    sub._subscribed();
    this.#emit("subscribed", sub.queue, sub.device, this.#node);
  }

  // A subscribe refused with a transient error: again after the backoff, on the same socket
  // (a new connection renews every subscription anyway).
  #subscribeLater(sub) {
    const socket = this.#ws;
    sub._retries ??= new Backoff({ base: this.#backoff.base, cap: this.#backoff.cap });
    this.#after(sub._retries.next(), () => {
      if (this.#ws === socket && socket && this.#subs.get(sub.queue) === sub) this.#sendSubscribe(socket, sub);
    });
  }

  #after(ms, fn) {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  // --- server frames --------------------------------------------------------------------------

  // One frame of the open socket; true if it shows the connection works.
  #onFrame(socket, frame) {
    switch (frame.type) {
      case undefined:
        if (typeof frame.message !== "string") return false;
        this.#onLegacyMessage(frame.message);
        return true;
      case "message":
        this.#onMessage(frame);
        return true;
      case "subscribed": {
        this.#reply(frame.queue, "subscribe");
        const sub = this.#subs.get(frame.queue);
        if (sub) this.#subscribed(sub);
        return true;
      }
      case "left":
        this.#reply(frame.queue, "leave", frame.removed === true);
        return true;
      case "sent":
        this.#reply(frame.queue, "send", frame.id);
        return true;
      case "acked":
      case "nacked":
      case "extended":
        this.#resolveOp(frame.queue, frame.id, frame.type.slice(0, -2), true);
        return true;
      case "error":
        this.#onError(frame);
        return false;
      case "expiring":
        this.#refresh(socket);
        return true;
      default:
        return true; // unsubscribed, refreshed, and frames of newer servers
    }
  }

  #onLegacyMessage(body) {
    const [sub] = this.#subs.values();
    if (!sub) return;
    this.#deliver(sub, new Delivery(this, sub.queue, "", 0, 0, body, this.#generation));
  }

  #onMessage(frame) {
    const sub = this.#subs.get(frame.queue);
    if (!sub || typeof frame.id !== "string" || typeof frame.message !== "string") return;
    if (this.#dedupe > 0) {
      let seen = this.#seen.get(frame.queue);
      if (!seen) this.#seen.set(frame.queue, (seen = new Map()));
      const holder = seen.get(frame.id);
      if (holder === ACKED) {
        // The application acked it; the ack was lost with a connection. Ack it again here.
        this.#queueAck(frame.queue, frame.id, null);
        return;
      }
      if (holder !== undefined) {
        // The application holds it unacked: its ack() will go to this connection.
        seen.set(frame.id, this.#generation);
        return;
      }
      seen.set(frame.id, this.#generation);
      if (seen.size > this.#dedupe) seen.delete(seen.keys().next().value);
    }
    const delivery = new Delivery(
      this, frame.queue, frame.id, frame.rc, frame.sent, frame.message, this.#generation,
    );
    this.#deliver(sub, delivery);
  }

  #deliver(sub, delivery) {
    this.#emit("message", delivery);
    sub._feed(delivery);
  }

  #onError(frame) {
    const { code, detail, queue, id } = frame;
    if (typeof queue === "string" && typeof id === "string") {
      this.#resolveOp(queue, id, null, false);
      return;
    }
    const error = new CommandFailed(String(code), String(detail ?? ""), queue ?? null);
    if (typeof queue === "string" && code !== "not_subscribed" && code !== "ack_not_supported") {
      const pending = this.#pending.get(queue);
      const command = pending?.shift();
      if (command?.kind === "send" || command?.kind === "leave") {
        command.reject(error);
        return;
      }
      if (command?.kind === "subscribe") {
        const sub = this.#subs.get(queue);
        if (sub === command.sub && TRANSIENT_SUBSCRIBE_ERRORS.has(error.errorCode)) {
          this.#subscribeLater(sub); // still active; `error` (non-fatal) says it was refused
        } else if (sub === command.sub) {
          // A refused subscription ends (it is not renewed): ready rejects, `error` says so.
          this.#subs.delete(queue);
          this.#seen.delete(queue);
          sub._end(error);
        }
      }
    }
    this.#emit("error", error);
  }

  #reply(queue, kind, value) {
    const pending = this.#pending.get(queue);
    if (!pending) return;
    const index = pending.findIndex((command) => command.kind === kind);
    if (index < 0) return;
    const [command] = pending.splice(index, 1);
    command.resolve?.(value);
  }

  // `expiring`: tokens() then `/refresh`, one renewal at a time (a warning meanwhile is covered
  // by it), at most one `/refresh` per MIN_REFRESH_INTERVAL. tokens() failing is retried with
  // backoff while the socket lasts; UnauthorizedError ends the client.
  async #refresh(socket) {
    if (this.#refreshing === socket) return;
    this.#refreshing = socket; // one for an older socket stops by itself
    const retries = new Backoff({ base: this.#backoff.base, cap: this.#backoff.cap });
    try {
      const wait = this.#lastRefresh + MIN_REFRESH_INTERVAL - performance.now();
      if (wait > 0) await new Promise((resolve) => this.#after(wait, resolve));
      while (this.#ws === socket && !this.#closing) {
        let tokens;
        try {
          tokens = await this.#callTokens();
        } catch (error) {
          if (error instanceof TokensFailed) {
            this.#emit("error", error);
            await new Promise((resolve) => this.#after(retries.next(), resolve));
            continue;
          }
          // Unauthorized (or a malformed answer): the end of the client.
          this.#pendingFatal = error;
          socket.close(1000, "client closing");
          return;
        }
        this.#tokens = tokens;
        if (this.#ws !== socket) return;
        this.#lastRefresh = performance.now();
        this.#write(socket, `/refresh ${tokens[0]}`);
        return;
      }
    } finally {
      if (this.#refreshing === socket) this.#refreshing = null;
    }
  }

  // --- acks, nacks, extends -------------------------------------------------------------------

  // Whether `delivery` can be settled on the open connection: it came on it, or (dedupe) its
  // redelivery did. Anything else would be answered unknown_message.
  #holds(delivery) {
    if (!this.#ws) return false;
    if (delivery.generation === this.#generation) return true;
    return this.#seen.get(delivery.queue)?.get(delivery.id) === this.#generation;
  }

  _ack(delivery, confirm) {
    if (this.#legacy) return Promise.resolve(true);
    const seen = this.#seen.get(delivery.queue);
    const sendable = this.#holds(delivery) && this.#subs.has(delivery.queue);
    if (seen?.has(delivery.id)) seen.set(delivery.id, ACKED);
    if (!sendable) return Promise.resolve(false);
    if (!confirm) {
      this.#queueAck(delivery.queue, delivery.id, null);
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.#queueAck(delivery.queue, delivery.id, resolve));
  }

  _nack(delivery, delay) {
    if (this.#legacy) return Promise.reject(new ClientError("nack needs the wsmq.v1 protocol (legacy mode is read-only)"));
    if (delay !== undefined && delay !== null && !(Number.isInteger(delay) && delay >= 0 && delay <= MAX_NACK_DELAY)) {
      return Promise.reject(new ClientError(`nack delay must be an integer 0..${MAX_NACK_DELAY} (seconds)`));
    }
    const sendable = this.#holds(delivery);
    this.#forget(delivery.queue, delivery.id); // its redelivery is wanted
    const suffix = delay === undefined || delay === null ? "" : ` ${delay}`;
    return this.#held("nack", delivery, `/nack/${delivery.queue}/${delivery.id}${suffix}`, sendable);
  }

  _extend(delivery, seconds) {
    if (this.#legacy) return Promise.reject(new ClientError("extend needs the wsmq.v1 protocol (legacy mode is read-only)"));
    if (!(Number.isInteger(seconds) && seconds >= 1)) {
      return Promise.reject(new ClientError("extend seconds must be a positive integer"));
    }
    const frame = `/extend/${delivery.queue}/${delivery.id} ${seconds}`;
    return this.#held("extend", delivery, frame, this.#holds(delivery));
  }

  #held(kind, delivery, frame, sendable) {
    if (!sendable) return Promise.resolve(false);
    this.#flushAcks(); // the server keeps the order: earlier acks stay earlier
    return new Promise((resolve) => {
      this.#addOp(delivery.queue, delivery.id, kind, resolve);
      if (!this.#write(this.#ws, frame)) this.#resolveOp(delivery.queue, delivery.id, kind, false);
    });
  }

  _unsubscribe(sub) {
    if (this.#subs.get(sub.queue) !== sub) return Promise.resolve();
    this.#drop(sub);
    if (this.#ws) this.#write(this.#ws, `/unsubscribe/${sub.queue}`);
    return Promise.resolve();
  }

  // End `sub` here: not renewed, its settles queued so far go out first.
  #drop(sub) {
    this.#flushAcks();
    this.#subs.delete(sub.queue);
    this.#seen.delete(sub.queue);
    sub._end(null);
  }

  _handlerFailed(delivery, error) {
    // Not settled: it comes back after the queue's visibility timeout; dedupe must let it in.
    const holder = this.#seen.get(delivery.queue)?.get(delivery.id);
    if (holder !== undefined && holder !== ACKED) this.#forget(delivery.queue, delivery.id);
    this.#emit("error", new HandlerFailed(delivery, error));
  }

  #forget(queue, id) {
    this.#seen.get(queue)?.delete(id);
  }

  #queueAck(queue, id, resolve) {
    this.#addOp(queue, id, "ack", resolve);
    if (!this.#acks.has(queue)) this.#acks.set(queue, []);
    this.#acks.get(queue).push(id);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // After every handler step ready in this turn: all their acks join one frame.
      later(() => this.#flushAcks());
    }
  }

  #flushAcks() {
    this.#flushScheduled = false;
    const acks = this.#acks;
    this.#acks = new Map();
    for (const [queue, ids] of acks) {
      for (let start = 0; start < ids.length; start += MAX_ACK_IDS) {
        const chunk = ids.slice(start, start + MAX_ACK_IDS);
        if (!this.#ws || !this.#write(this.#ws, `/ack/${queue}/${chunk.join(",")}`)) {
          for (const id of chunk) this.#resolveOp(queue, id, "ack", false);
        }
      }
    }
  }

  #addOp(queue, id, kind, resolve) {
    const key = `${queue}/${id}`;
    if (!this.#ops.has(key)) this.#ops.set(key, []);
    this.#ops.get(key).push({ kind, resolve });
  }

  // The oldest op on (queue, id) of `kind` (any kind for an error) is the one answered.
  #resolveOp(queue, id, kind, ok) {
    const key = `${queue}/${id}`;
    const ops = this.#ops.get(key);
    if (!ops) return;
    const index = kind === null ? 0 : ops.findIndex((op) => op.kind === kind);
    if (index < 0) return;
    const [op] = ops.splice(index, 1);
    if (ops.length === 0) this.#ops.delete(key);
    op.resolve?.(ok);
  }

  #resolveAllOps(ok) {
    const ops = this.#ops;
    this.#ops = new Map();
    for (const list of ops.values()) for (const op of list) op.resolve?.(ok);
  }
}

/** `connect(urls, {tokens, ...})`: a Client that starts connecting at once. */
export function connect(urls, options) {
  return new Client(urls, options);
}

export default connect;

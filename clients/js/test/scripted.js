// A scripted wsmq node for the client's tests: a real `ws` WebSocket server on a real loopback
// port, driven step by step by the test. Every wait is bounded (STEP ms) so a hang fails fast.
//
// `ws` is a test-only dependency: from $WSMQ_NODE_MODULES (the repo's pinned npm packages),
// else from a normal resolution (npm install in clients/js installs it as a devDependency).
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";

const require = createRequire(import.meta.url);
export const WebSocket = process.env.WSMQ_NODE_MODULES
  ? require(path.join(process.env.WSMQ_NODE_MODULES, "ws"))
  : require("ws");
const { WebSocketServer } = WebSocket;

export const STEP = 5000;

/** An async FIFO whose get() fails after `timeout` ms instead of hanging. */
export class Inbox {
  #items = [];
  #takers = [];

  put(item) {
    const taker = this.#takers.shift();
    if (taker) taker(item);
    else this.#items.push(item);
  }

  get size() {
    return this.#items.length;
  }

  get(timeout = STEP, what = "an item") {
    if (this.#items.length > 0) return Promise.resolve(this.#items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#takers.splice(this.#takers.indexOf(take), 1);
        reject(new Error(`timed out after ${timeout} ms waiting for ${what}`));
      }, timeout);
      const take = (item) => {
        clearTimeout(timer);
        resolve(item);
      };
      this.#takers.push(take);
    });
  }
}

/** One accepted WebSocket: what it received, and how to answer. */
export class Conn {
  constructor(ws, request) {
    this.ws = ws;
    this.headers = request.headers;
    this.protocol = ws.protocol;
    this.received = new Inbox();
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on("message", (data, isBinary) => this.received.put(isBinary ? data : data.toString()));
  }

  recv(timeout = STEP) {
    return this.received.get(timeout, "a client frame");
  }

  send(frame) {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  message(queue, id, body = `body of ${id}`, rc = 1) {
    this.send({ type: "message", queue, id, rc, sent: 1700000000123.5, message: body });
  }

  close(code, reason = "") {
    this.ws.close(code, reason);
    return this.closed;
  }

  /** No close frame: the client sees 1006, as when a node is SIGKILLed. */
  kill() {
    this.ws.terminate();
    return this.closed;
  }
}

/** Accepts WebSockets (choosing `wsmq.v1` unless `legacy`), or refuses the next `rejects`
 * handshakes with HTTP `rejectStatus`. */
export class ScriptedNode {
  constructor({ legacy = false } = {}) {
    this.legacy = legacy;
    this.rejectStatus = 0;
    this.rejects = 0; // how many handshakes still to refuse (Infinity: all)
    this.handshakes = [];
    this.accepted = new Inbox();
    this.url = "";
  }

  async start() {
    this.wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      handleProtocols: (protocols) => (!this.legacy && protocols.has("wsmq.v1") ? "wsmq.v1" : false),
      verifyClient: (info, done) => {
        this.handshakes.push(info.req.headers);
        if (this.rejects > 0) {
          this.rejects -= 1;
          done(false, this.rejectStatus);
        } else {
          done(true);
        }
      },
    });
    this.wss.on("connection", (ws, request) => this.accepted.put(new Conn(ws, request)));
    await new Promise((resolve) => this.wss.once("listening", resolve));
    this.url = `ws://127.0.0.1:${this.wss.address().port}/`;
    return this;
  }

  accept(timeout = STEP) {
    return this.accepted.get(timeout, `a connection to ${this.url}`);
  }

  async stop() {
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

/** A TCP server that accepts connections and never answers (a hung node). */
export async function silentServer() {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `ws://127.0.0.1:${server.address().port}/`,
    accepted: () => sockets.size,
    stop: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Records a client's events and waits (bounded) for the next one of a name. */
export class Recorder {
  constructor(client) {
    this.log = [];
    this.times = [];
    this.inboxes = new Map();
    for (const name of ["connecting", "connected", "disconnected", "reconnecting", "message", "error", "subscribed"]) {
      this.inboxes.set(name, new Inbox());
      client.on(name, (...args) => {
        this.log.push([name, ...args]);
        this.times.push(performance.now());
        this.inboxes.get(name).put(args);
      });
    }
  }

  next(name, timeout = STEP) {
    return this.inboxes.get(name).get(timeout, `a "${name}" event`);
  }

  names() {
    return this.log.map(([name]) => name);
  }

  count(name) {
    return this.log.filter(([n]) => n === name).length;
  }
}

/** tokens() that returns a new pair each call: ["x1", "a1"], ["x2", "a2"], ... */
export function tokenSource() {
  const source = async () => {
    source.calls += 1;
    return [`x${source.calls}`, `a${source.calls}`];
  };
  source.calls = 0;
  return source;
}

/** A WebSocket constructor as a browser has it: (url, protocols), no headers option. */
export function BrowserLikeWebSocket(url, protocols) {
  return new WebSocket(url, protocols);
}

/** A 32-character RSMQ-like id ending in `n`. */
export function msgId(n) {
  return `id${String(n).padStart(30, "0")}`;
}

/** Resolves after the event loop's current turn (setImmediate): acks of the turn are out. */
export function nextTurn() {
  return new Promise((resolve) => setImmediate(resolve));
}

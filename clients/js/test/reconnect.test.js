// The reconnect policy by close code, token renewal, backoff bounds, fatal errors.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  AuthenticationFailed, Backoff, ClientError, ConnectionClosed, TokensFailed, UnauthorizedError,
  afterClose, connect,
} from "../wsmq-client.js";
import {
  BrowserLikeWebSocket, Recorder, ScriptedNode, WebSocket, silentServer, tokenSource,
} from "./scripted.js";

const opts = { timeout: 20000 };
const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function nodes(n, options) {
  const started = [];
  for (let i = 0; i < n; i += 1) {
    const node = await new ScriptedNode(options).start();
    cleanups.push(() => node.stop());
    started.push(node);
  }
  return started;
}

function client(urls, options = {}) {
  const c = connect(urls, {
    tokens: tokenSource(), WebSocket, shuffle: false, backoff: { base: 20, cap: 80 }, ...options,
  });
  cleanups.push(() => c.close());
  return [c, new Recorder(c)];
}

test("the close-code table", () => {
  const expected = {
    1001: "next_node_now", 1012: "next_node_now", 4401: "new_tokens", 4403: "new_tokens",
    4429: "back_off", 4408: "back_off", 1006: "back_off", 1011: "back_off",
    1002: "fatal", 1007: "fatal", 1008: "fatal", 1009: "fatal",
  };
  for (const [code, policy] of Object.entries(expected)) assert.equal(afterClose(Number(code)), policy, code);
});

test("1001 and 1012: the next node at once, every subscription renewed there", opts, async () => {
  const [a, b] = await nodes(2);
  const [c, events] = client([a.url, b.url]);
  c.subscribe("q1", () => {});
  c.subscribe("q2", () => {});
  const first = await a.accept();
  assert.deepEqual([await first.recv(), await first.recv()], ["/subscribe/q1", "/subscribe/q2"]);
  first.send({ type: "subscribed", queue: "q1" });
  first.close(1001, "server shutting down");
  const second = await b.accept();
  assert.deepEqual([await second.recv(), await second.recv()], ["/subscribe/q1", "/subscribe/q2"]);
  second.send({ type: "subscribed", queue: "q2" });
  second.close(1012, "server restarting");
  const third = await a.accept();
  assert.equal(await third.recv(), "/subscribe/q1");
  assert.deepEqual(events.log.filter(([n]) => n === "disconnected").map(([, code, reason, node]) => [code, reason, node]), [
    [1001, "server shutting down", a.url], [1012, "server restarting", b.url],
  ]);
  assert.equal(events.count("reconnecting"), 0); // no backoff
  assert.equal(events.count("error"), 0);
});

test("a full round of nodes going away without a working connection backs off", opts, async () => {
  const [a, b] = await nodes(2);
  const [, events] = client([a.url, b.url]);
  (await a.accept()).close(1001, "server shutting down");
  (await b.accept()).close(1001, "server shutting down");
  const [delay, code] = await events.next("reconnecting");
  assert.equal(code, 1001);
  assert.ok(delay >= 10 && delay <= 20, `${delay}`);
  await a.accept();
});

test("4401: new tokens and the next node; the same close right after fresh tokens is fatal", opts, async () => {
  const [a, b] = await nodes(2);
  const tokens = tokenSource();
  const [c, events] = client([a.url, b.url], { tokens, WebSocket: BrowserLikeWebSocket });
  const sending = c.send("q", "hi");
  const first = await a.accept();
  assert.equal(await first.recv(), "/auth x1 a1");
  first.close(4401, "token expired");
  const second = await b.accept();
  assert.equal(await second.recv(), "/auth x2 a2");
  second.close(4401, "bad token");
  const [error] = await events.next("error");
  assert.ok(error instanceof AuthenticationFailed);
  assert.equal(error.fatal, true);
  assert.equal(c.error, error);
  await assert.rejects(sending, AuthenticationFailed);
  await assert.rejects(c.ready, AuthenticationFailed);
  await assert.rejects(c.send("q", "later"), AuthenticationFailed);
  assert.throws(() => c.subscribe("q", () => {}), AuthenticationFailed);
  await c.close();
  assert.equal(tokens.calls, 2);
  assert.equal(a.handshakes.length + b.handshakes.length, 2); // stopped: no third attempt
  assert.equal(events.count("reconnecting"), 0);
});

test("4403 after a working connection: new tokens, reconnect, no error", opts, async () => {
  const [a, b] = await nodes(2);
  const [c, events] = client([a.url, b.url]);
  c.subscribe("q", () => {});
  const first = await a.accept();
  assert.equal(first.headers["x-token"], "x1");
  first.send({ type: "subscribed", queue: "q" });
  first.close(4403, "token expired");
  const second = await b.accept();
  assert.deepEqual([second.headers["x-token"], second.headers["x-access-token"]], ["x2", "a2"]);
  second.close(4403, "access revoked"); // the handshake accepted x2: not a strike
  const third = await a.accept();
  assert.equal(third.headers["x-token"], "x3");
  assert.equal(await third.recv(), "/subscribe/q");
  assert.equal(events.count("error"), 0);
  assert.equal(c.error, null);
});

test("4429: back off, then the next node", opts, async () => {
  const [a, b] = await nodes(2);
  const [, events] = client([a.url, b.url]);
  (await a.accept()).close(4429, "rate limit exceeded");
  const [delay, code] = await events.next("reconnecting");
  assert.equal(code, 4429);
  assert.ok(delay >= 10 && delay <= 20, `${delay}`);
  const second = await b.accept();
  assert.equal(second.headers["x-token"], "x1"); // same tokens
});

for (const code of [1002, 1007, 1008, 1009]) {
  test(`${code}: error, stop, pending promises rejected`, opts, async () => {
    const [a, b] = await nodes(2);
    const [c, events] = client([a.url, b.url]);
    const conn = await a.accept();
    const sending = c.send("q", "hello");
    assert.equal(await conn.recv(), "/send/q hello");
    conn.close(code, "protocol error");
    const [error] = await events.next("error");
    assert.ok(error instanceof ConnectionClosed);
    assert.equal(error.closeCode, code);
    assert.equal(error.fatal, true);
    await assert.rejects(sending, ConnectionClosed);
    await c.close();
    assert.equal(b.handshakes.length, 0);
    assert.equal(a.handshakes.length, 1);
  });
}

test("HTTP 401 at the handshake with fresh tokens is fatal", opts, async () => {
  const [a] = await nodes(1);
  a.rejectStatus = 401;
  a.rejects = Infinity;
  const [c, events] = client([a.url]);
  const [error] = await events.next("error");
  assert.ok(error instanceof AuthenticationFailed);
  assert.match(error.message, /HTTP 401/);
  await assert.rejects(c.ready, AuthenticationFailed);
  await c.close();
  assert.equal(a.handshakes.length, 1);
});

test("HTTP 401 with older tokens: new ones, the same node again", opts, async () => {
  const [a, b] = await nodes(2);
  const [, events] = client([a.url, b.url]);
  const first = await a.accept();
  await events.next("connected");
  b.rejectStatus = 401;
  b.rejects = 1;
  first.kill(); // 1006: back off, then node b with the tokens of before
  const second = await b.accept();
  assert.deepEqual(b.handshakes.map((h) => h["x-token"]), ["x1", "x2"]);
  assert.equal(second.headers["x-token"], "x2");
  const disconnects = events.log.filter(([n]) => n === "disconnected").map(([, code, reason]) => [code, reason]);
  assert.deepEqual(disconnects, [[1006, ""], [1006, "HTTP 401"]]);
  assert.equal(events.count("error"), 0);
});

test("backoff: doubling from base to cap with jitter in [d/2, d]", () => {
  for (const random of [() => 0, () => 0.999999, Math.random]) {
    const backoff = new Backoff({ base: 100, cap: 1000, random });
    const delays = Array.from({ length: 8 }, () => backoff.next());
    const ceilings = [100, 200, 400, 800, 1000, 1000, 1000, 1000];
    delays.forEach((d, i) => assert.ok(d >= ceilings[i] / 2 && d <= ceilings[i], `${i}: ${d}`));
    backoff.reset();
    assert.ok(backoff.next() <= 100);
  }
  assert.throws(() => new Backoff({ base: 0 }), ClientError);
  assert.throws(() => new Backoff({ base: 10, cap: 5 }), ClientError);
});

test("backoff in the client: bounded growth, real waits, reset after a working connection", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url], { backoff: { base: 10, cap: 40 } });
  const sub = c.subscribe("q", () => {});
  const delays = [];
  for (let i = 0; i < 5; i += 1) {
    (await a.accept()).kill();
    delays.push((await events.next("reconnecting"))[0]);
  }
  const ceilings = [10, 20, 40, 40, 40];
  delays.forEach((d, i) => assert.ok(d >= ceilings[i] / 2 && d <= ceilings[i], `${i}: ${d}`));
  const good = await a.accept();
  assert.equal(await good.recv(), "/subscribe/q");
  good.send({ type: "subscribed", queue: "q" }); // a good frame: the backoff starts again
  await sub.ready;
  good.kill();
  const [delay] = await events.next("reconnecting");
  assert.ok(delay >= 5 && delay <= 10, `${delay}`);
  await a.accept();
  // Each reconnect waited its delay: the next `connecting` came no sooner.
  const names = events.names();
  names.forEach((name, i) => {
    if (name !== "reconnecting") return;
    const next = names.indexOf("connecting", i);
    const waited = events.times[next] - events.times[i];
    assert.ok(waited >= events.log[i][1] - 2, `waited ${waited} < ${events.log[i][1]}`);
  });
});

test("a node that never answers the handshake: connect timeout, then the next node", opts, async () => {
  const silent = await silentServer();
  cleanups.push(() => silent.stop());
  const [b] = await nodes(1);
  const [c, events] = client([silent.url, b.url], { connectTimeout: 300 });
  const [code, reason, node] = await events.next("disconnected");
  assert.deepEqual([code, reason, node], [1006, "connect timeout", silent.url]);
  await b.accept();
  await c.ready;
});

test("tokens() failing is transient: an error event, a backoff, another call", opts, async () => {
  const [a] = await nodes(1);
  let calls = 0;
  const tokens = async () => {
    calls += 1;
    if (calls <= 2) throw new Error("login service down");
    return ["x3", "a3"];
  };
  const [c, events] = client([a.url], { tokens });
  for (let i = 0; i < 2; i += 1) {
    const [error] = await events.next("error");
    assert.ok(error instanceof TokensFailed);
    assert.equal(error.fatal, false);
    assert.match(error.message, /login service down/);
    assert.equal((await events.next("reconnecting"))[1], 0); // 0: no close, tokens() failed
  }
  const conn = await a.accept();
  assert.equal(conn.headers["x-token"], "x3");
  await c.ready;
  assert.equal(c.error, null);
});

test("tokens() throwing UnauthorizedError ends the client with AuthenticationFailed", opts, async () => {
  const [a] = await nodes(1);
  const tokens = async () => {
    throw new UnauthorizedError("logged out");
  };
  const [c, events] = client([a.url], { tokens });
  const [error] = await events.next("error");
  assert.ok(error instanceof AuthenticationFailed);
  assert.equal(error.fatal, true);
  assert.ok(error.cause instanceof UnauthorizedError);
  await assert.rejects(c.send("q", "x"), AuthenticationFailed);
  assert.equal(a.handshakes.length, 0);
});

test("tokens() returning a malformed pair is an error, not a connection attempt", opts, async () => {
  const [a] = await nodes(1);
  const [, events] = client([a.url], { tokens: async () => ["has space", "a1"] });
  const [error] = await events.next("error");
  assert.ok(error instanceof AuthenticationFailed);
  assert.match(error.message, /printable ASCII/);
  assert.equal(a.handshakes.length, 0);
});

test("a v1 client whose server chose no subprotocol stops with an error", opts, async () => {
  const [a] = await nodes(1, { legacy: true });
  const [, events] = client([a.url]);
  const [error] = await events.next("error");
  assert.ok(error instanceof ClientError);
  assert.match(error.message, /wsmq\.v1/);
});

test("bad options are typed errors", () => {
  const tokens = tokenSource();
  assert.throws(() => connect([], { tokens, WebSocket }), ClientError);
  assert.throws(() => connect(["ws://x/"], { WebSocket }), /tokens/);
  assert.throws(() => connect(["ws://x/"], { tokens, WebSocket, auth: "cookie" }), ClientError);
  assert.throws(() => connect(["ws://x/"], { tokens, WebSocket: 42 }), /WebSocket/);
  assert.throws(() => connect(["http://x/"], { tokens, WebSocket }), /ws:\/\//);
  assert.throws(() => connect(["ws://x/"], { tokens, WebSocket, dedupe: -1 }), /dedupe/);
  assert.throws(() => connect(["ws://x/"], { tokens, WebSocket, dedupe: 1.5 }), /dedupe/);
  assert.throws(() => connect(["ws://x/"], { tokens, WebSocket, connectTimeout: 0 }), /connectTimeout/);
  assert.throws(() => connect(["ws://x/"], { tokens, WebSocket, backoff: { base: -1 } }), /backoff/);
  const c = connect(["ws://127.0.0.1:9/"], { tokens, WebSocket });
  assert.throws(() => c.on("connected", "nope"), ClientError);
  return c.close();
});

test("on() returns an unsubscribe function; off() removes a listener", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const seen = [];
  const stop = c.on("connected", (node) => seen.push(["on", node]));
  const listener = (node) => seen.push(["off", node]);
  c.on("connected", listener);
  c.off("connected", listener);
  const first = await a.accept();
  await events.next("connected");
  first.kill();
  stop();
  await a.accept();
  await events.next("connected");
  assert.deepEqual(seen, [["on", a.url]]);
});

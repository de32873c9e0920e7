// Transient subscribe refusals, `subscribed` events, devices and leave, a failing tokens() on
// `expiring`, spaced renewals, ClientClosed.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  AuthenticationFailed, ClientClosed, CommandFailed, ConnectionClosed, MIN_REFRESH_INTERVAL,
  TokensFailed, UnauthorizedError, connect,
} from "../wsmq-client.js";
import { Recorder, ScriptedNode, WebSocket, msgId, tokenSource } from "./scripted.js";

const opts = { timeout: 20000 };
const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function nodes(n) {
  const started = [];
  for (let i = 0; i < n; i += 1) {
    const node = await new ScriptedNode().start();
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

/** The next client frame within `ms`, or null. */
async function recvWithin(conn, ms) {
  try {
    return await conn.received.get(ms);
  } catch {
    return null;
  }
}

// --- transient subscribe refusals -------------------------------------------------------------

test("unavailable is retried on the same connection, then ready and `subscribed`", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const got = [];
  const sub = c.subscribe("orders", (d) => got.push(d.id));
  const conn = await a.accept();
  for (let i = 0; i < 2; i += 1) {
    assert.equal(await conn.recv(), "/subscribe/orders");
    conn.send({ type: "error", code: "unavailable", detail: "redis", queue: "orders" });
    const [error] = await events.next("error");
    assert.ok(error instanceof CommandFailed);
    assert.equal(error.errorCode, "unavailable");
    assert.equal(error.fatal, false);
  }
  assert.equal(await conn.recv(), "/subscribe/orders");
  assert.equal(sub.active, true);
  assert.equal(sub.subscribed, false);
  conn.send({ type: "subscribed", queue: "orders" });
  await sub.ready;
  assert.deepEqual(await events.next("subscribed"), ["orders", null, a.url]);
  assert.equal(sub.subscribed, true);
  conn.message("orders", msgId(1));
  await events.next("message");
  assert.equal(a.handshakes.length, 1);
  assert.equal(events.count("subscribed"), 1);
});

test("a subscription still retrying is renewed after a reconnect, the old timer sends nothing", opts, async () => {
  const [a, b] = await nodes(2);
  const [c, events] = client([a.url, b.url]);
  const sub = c.subscribe("orders", () => {});
  const first = await a.accept();
  assert.equal(await first.recv(), "/subscribe/orders");
  first.send({ type: "error", code: "unavailable", detail: "stopping", queue: "orders" });
  await events.next("error");
  await first.close(1001, "server shutting down");
  const second = await b.accept();
  assert.equal(await second.recv(), "/subscribe/orders");
  second.send({ type: "subscribed", queue: "orders" });
  await sub.ready;
  assert.deepEqual(await events.next("subscribed"), ["orders", null, b.url]);
  assert.equal(await recvWithin(second, 300), null);
});

for (const code of ["forbidden", "invalid_queue", "too_many_subscriptions"]) {
  test(`${code} ends the subscription: ready rejects, not renewed`, opts, async () => {
    const [a] = await nodes(1);
    const [c, events] = client([a.url]);
    const sub = c.subscribe("orders", () => {});
    const conn = await a.accept();
    assert.equal(await conn.recv(), "/subscribe/orders");
    conn.send({ type: "error", code, detail: "no", queue: "orders" });
    await assert.rejects(sub.ready, (error) => error instanceof CommandFailed && error.errorCode === code);
    assert.equal(sub.active, false);
    assert.equal((await events.next("error"))[0].errorCode, code);
    c.subscribe("orders", () => {}); // gone: the queue can be subscribed again
    assert.equal(await conn.recv(), "/subscribe/orders");
  });
}

test("`subscribed` on every (re)subscribe, ready once", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const sub = c.subscribe("orders", () => {});
  for (let i = 0; i < 2; i += 1) {
    const conn = await a.accept();
    assert.equal(await conn.recv(), "/subscribe/orders");
    conn.send({ type: "subscribed", queue: "orders" });
    assert.deepEqual(await events.next("subscribed"), ["orders", null, a.url]);
    if (i === 0) conn.close(1012, "server restarting");
  }
  await sub.ready;
});

// --- devices and leave -------------------------------------------------------------------------

test("subscribe with {device}: the frame, sub.device, and `subscribed` with it", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const sub = c.subscribe("u1", () => {}, { device: "phone-7f3a" });
  assert.equal(sub.device, "phone-7f3a");
  const conn = await a.accept();
  assert.equal(await conn.recv(), "/subscribe/u1 device=phone-7f3a");
  conn.send({ type: "subscribed", queue: "u1", device: "phone-7f3a" });
  await sub.ready;
  assert.deepEqual(await events.next("subscribed"), ["u1", "phone-7f3a", a.url]);
  assert.throws(() => c.subscribe("u2", () => {}, { device: "a:b" }), /invalid device/);
});

test("leave: removed true/false, the device's subscription ends, device_in_use rejects", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const sub = c.subscribe("u1", () => {}, { device: "laptop" });
  c.subscribe("u2", () => {}, { device: "laptop" });
  const conn = await a.accept();
  for (const queue of ["u1", "u2"]) {
    assert.equal(await conn.recv(), `/subscribe/${queue} device=laptop`);
    conn.send({ type: "subscribed", queue, device: "laptop" });
  }
  const leaving = c.leave("u1", "laptop");
  assert.equal(sub.active, false); // ended at once: the server unsubscribes it
  assert.equal(await conn.recv(), "/leave/u1 device=laptop");
  conn.send({ type: "left", queue: "u1", device: "laptop", removed: true });
  assert.equal(await leaving, true);
  const gone = c.leave("u2", "old-phone");
  assert.equal(await conn.recv(), "/leave/u2 device=old-phone");
  conn.send({ type: "left", queue: "u2", device: "old-phone", removed: false });
  assert.equal(await gone, false);
  const busy = c.leave("u2", "tablet");
  assert.equal(await conn.recv(), "/leave/u2 device=tablet");
  conn.send({ type: "error", code: "device_in_use", detail: "subscribed", queue: "u2" });
  await assert.rejects(busy, (error) => error instanceof CommandFailed && error.errorCode === "device_in_use");
  conn.close(1012, "server restarting");
  const again = await a.accept(); // only u2 is renewed
  assert.equal(await again.recv(), "/subscribe/u2 device=laptop");
  assert.equal(await recvWithin(again, 300), null);
  await assert.rejects(c.leave("u1", "a:b"), /invalid device/);
  await assert.rejects(c.leave("bad name", "phone"), /invalid queue/);
});

// --- tokens() on expiring, spaced renewals ------------------------------------------------------

test("tokens() failing on expiring: a non-fatal error, retried, then /refresh", opts, async () => {
  const [a] = await nodes(1);
  let calls = 0;
  const tokens = async () => {
    calls += 1;
    if (calls === 2) throw new Error("blip");
    return [`x${calls}`, `a${calls}`];
  };
  const [c, events] = client([a.url], { tokens });
  const conn = await a.accept();
  conn.send({ type: "expiring", seconds: 30 });
  const [error] = await events.next("error");
  assert.ok(error instanceof TokensFailed);
  assert.equal(error.fatal, false);
  assert.equal(await conn.recv(), "/refresh x3");
  assert.equal(c.connected, true);
  assert.equal(c.error, null);
});

test("UnauthorizedError on expiring ends the client with AuthenticationFailed", opts, async () => {
  const [a] = await nodes(1);
  let calls = 0;
  const tokens = async () => {
    calls += 1;
    if (calls === 2) throw new UnauthorizedError("session revoked");
    return [`x${calls}`, `a${calls}`];
  };
  const [c, events] = client([a.url], { tokens });
  const sub = c.subscribe("orders", () => {});
  const conn = await a.accept();
  assert.equal(await conn.recv(), "/subscribe/orders");
  conn.send({ type: "expiring", seconds: 30 });
  const [error] = await events.next("error");
  assert.ok(error instanceof AuthenticationFailed);
  assert.equal(error.fatal, true);
  assert.equal(sub.active, false);
  await assert.rejects(c.send("orders", "x"), AuthenticationFailed);
  assert.equal(a.handshakes.length, 1);
});

test("a server warning after every refresh does not make the client loop", opts, async () => {
  const [a] = await nodes(1);
  const window = 2500;
  client([a.url]);
  const conn = await a.accept();
  conn.send({ type: "expiring", seconds: 1 });
  const refreshes = [];
  const deadline = performance.now() + window;
  for (;;) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    const frame = await recvWithin(conn, left);
    if (frame === null) break;
    assert.match(frame, /^\/refresh /);
    refreshes.push(performance.now());
    conn.send({ type: "refreshed", exp: 1900000000 });
    conn.send({ type: "expiring", seconds: 1 }); // the buggy server: warned again at once
  }
  assert.ok(refreshes.length >= 2 && refreshes.length <= window / MIN_REFRESH_INTERVAL + 1, String(refreshes.length));
  for (let i = 1; i < refreshes.length; i += 1) {
    assert.ok(refreshes[i] - refreshes[i - 1] >= MIN_REFRESH_INTERVAL - 50, String(refreshes[i] - refreshes[i - 1]));
  }
});

test("one renewal in flight covers every warning meanwhile", opts, async () => {
  const [a] = await nodes(1);
  let calls = 0;
  let release;
  const gate = new Promise((resolve) => {
    release = resolve;
  });
  const tokens = async () => {
    calls += 1;
    if (calls > 1) await gate;
    return [`x${calls}`, `a${calls}`];
  };
  client([a.url], { tokens });
  const conn = await a.accept();
  for (let i = 0; i < 3; i += 1) conn.send({ type: "expiring", seconds: 30 });
  const deadline = performance.now() + 5000;
  while (calls < 2 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  release();
  assert.equal(await conn.recv(), "/refresh x2");
  assert.equal(await recvWithin(conn, 300), null);
  assert.equal(calls, 2);
});

// --- ClientClosed --------------------------------------------------------------------------------

test("commands cut short by close() reject with ClientClosed; a lost connection does not", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const conn = await a.accept();
  const lost = c.send("chat", "one");
  assert.equal(await conn.recv(), "/send/chat one");
  conn.close(1012, "server restarting");
  await assert.rejects(lost, (error) => error instanceof ConnectionClosed && !(error instanceof ClientClosed));
  const again = await a.accept();
  const cut = c.send("chat", "two");
  assert.equal(await again.recv(), "/send/chat two");
  await c.close();
  await assert.rejects(cut, ClientClosed);
  await assert.rejects(c.send("chat", "three"), ClientClosed);
  assert.throws(() => c.subscribe("q", () => {}), ClientClosed);
});

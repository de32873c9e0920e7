// Deliveries: handlers, coalesced bulk acks, confirm, nack/extend, dedupe, send, legacy.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import {
  ClientError, CommandFailed, ConnectionClosed, Delivery, HandlerFailed, connect,
} from "../wsmq-client.js";
import { Inbox, Recorder, ScriptedNode, WebSocket, msgId, nextTurn, tokenSource } from "./scripted.js";

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
    tokens: tokenSource(), WebSocket, shuffle: false, backoff: { base: 10, cap: 20 }, ...options,
  });
  cleanups.push(() => c.close());
  return [c, new Recorder(c)];
}

/** A subscription whose handler only collects: the test settles the deliveries itself. */
async function collecting(c, node, queue = "q") {
  const got = new Inbox();
  const sub = c.subscribe(queue, (d) => got.put(d));
  const conn = await node.accept();
  assert.equal(await conn.recv(), `/subscribe/${queue}`);
  conn.send({ type: "subscribed", queue });
  await sub.ready;
  return { conn, got, sub };
}

async function take(got, n) {
  const out = [];
  for (let i = 0; i < n; i += 1) out.push(await got.get());
  return out;
}

test("a delivery carries queue, id, rc, sent, message; `message` events see it too", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  conn.send({ type: "message", queue: "q", id: msgId(1), rc: 3, sent: 1700000000123.5, message: "héllo\nworld" });
  const d = await got.get();
  assert.ok(d instanceof Delivery);
  assert.deepEqual([d.queue, d.id, d.rc, d.sent, d.message], ["q", msgId(1), 3, 1700000000123.5, "héllo\nworld"]);
  assert.equal((await events.next("message"))[0], d);
  assert.throws(() => {
    d.id = "x";
  }, TypeError); // frozen
});

test("acks of one turn go out as one bulk frame per queue", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  for (let i = 1; i <= 5; i += 1) conn.message("q", msgId(i));
  const ds = await take(got, 5);
  const results = ds.map((d) => d.ack()); // one turn
  assert.deepEqual(await Promise.all(results), [true, true, true, true, true]);
  assert.equal(await conn.recv(), `/ack/q/${ds.map((d) => d.id).join(",")}`);
  // Acks in different turns: one frame each.
  for (let i = 6; i <= 7; i += 1) conn.message("q", msgId(i));
  const [d6, d7] = await take(got, 2);
  await d6.ack();
  await nextTurn();
  await d7.ack();
  assert.deepEqual([await conn.recv(), await conn.recv()], [`/ack/q/${d6.id}`, `/ack/q/${d7.id}`]);
});

test("a handler that acks as messages arrive: acks coalesced, every id acked once", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const handled = [];
  const sub = c.subscribe("q", async (d) => {
    handled.push(d.id);
    await d.ack();
  });
  const conn = await a.accept();
  assert.equal(await conn.recv(), "/subscribe/q");
  conn.send({ type: "subscribed", queue: "q" });
  await sub.ready;
  const ids = Array.from({ length: 300 }, (_, i) => msgId(i));
  for (const id of ids) conn.message("q", id);
  const acked = [];
  let frames = 0;
  while (acked.length < ids.length) {
    const frame = await conn.recv();
    assert.match(frame, /^\/ack\/q\//);
    acked.push(...frame.slice("/ack/q/".length).split(","));
    frames += 1;
  }
  assert.deepEqual(acked, ids); // in order, each once
  assert.deepEqual(handled, ids);
  assert.ok(frames < ids.length / 10, `${frames} ack frames for ${ids.length} messages`);
});

test("more than 1000 acks in one turn: frames of at most 1000 ids", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  const n = 2500;
  for (let i = 0; i < n; i += 1) conn.message("q", msgId(i));
  const ds = await take(got, n);
  for (const d of ds) d.ack();
  const sizes = [];
  for (let i = 0; i < 3; i += 1) sizes.push((await conn.recv()).slice("/ack/q/".length).split(",").length);
  assert.deepEqual(sizes, [1000, 1000, 500]);
});

test("acks of two queues in one turn: one frame per queue", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const got = new Inbox();
  c.subscribe("q1", (d) => got.put(d));
  c.subscribe("q2", (d) => got.put(d));
  const conn = await a.accept();
  await conn.recv();
  await conn.recv();
  conn.message("q1", msgId(1));
  conn.message("q2", msgId(2));
  conn.message("q1", msgId(3));
  const ds = await take(got, 3);
  for (const d of ds) d.ack();
  assert.deepEqual(new Set([await conn.recv(), await conn.recv()]), new Set([
    `/ack/q1/${msgId(1)},${msgId(3)}`, `/ack/q2/${msgId(2)}`,
  ]));
});

test("ack({confirm: true}): true on acked, false on an error or a lost connection", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  for (let i = 1; i <= 3; i += 1) conn.message("q", msgId(i));
  const [d1, d2, d3] = await take(got, 3);
  const confirmed = [d1.ack({ confirm: true }), d2.ack({ confirm: true }), d3.ack({ confirm: true })];
  assert.equal(await conn.recv(), `/ack/q/${d1.id},${d2.id},${d3.id}`);
  conn.send({ type: "acked", queue: "q", id: d1.id });
  conn.send({ type: "error", code: "unknown_message", detail: "no such message", queue: "q", id: d2.id });
  assert.equal(await confirmed[0], true);
  assert.equal(await confirmed[1], false);
  conn.kill();
  assert.equal(await confirmed[2], false);
});

test("a delivery of a connection that closed is not acked (its redelivery is)", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  conn.message("q", msgId(1));
  const stale = await got.get();
  conn.kill();
  await events.next("disconnected");
  assert.equal(await stale.ack(), false);
  const again = await a.accept();
  assert.equal(await again.recv(), "/subscribe/q");
  assert.equal(await stale.ack(), false);
  again.message("q", msgId(1), "again", 2);
  const fresh = await got.get();
  assert.equal(fresh.rc, 2);
  assert.equal(await fresh.ack(), true);
  assert.equal(await again.recv(), `/ack/q/${msgId(1)}`); // and nothing for the stale one before
});

test("nack and extend: frames, replies, argument checks, order after acks", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  for (let i = 1; i <= 4; i += 1) conn.message("q", msgId(i));
  const [d1, d2, d3, d4] = await take(got, 4);
  const nack1 = d1.nack();
  assert.equal(await conn.recv(), `/nack/q/${d1.id}`);
  const nack2 = d2.nack(5);
  assert.equal(await conn.recv(), `/nack/q/${d2.id} 5`);
  const extend3 = d3.extend(30);
  assert.equal(await conn.recv(), `/extend/q/${d3.id} 30`);
  conn.send({ type: "nacked", queue: "q", id: d1.id });
  conn.send({ type: "error", code: "unknown_message", detail: "not held", queue: "q", id: d2.id });
  conn.send({ type: "extended", queue: "q", id: d3.id });
  assert.deepEqual(await Promise.all([nack1, nack2, extend3]), [true, false, true]);
  // An ack queued in this turn goes out before a nack sent after it.
  d4.ack();
  const extend4 = d4.extend(10);
  assert.deepEqual([await conn.recv(), await conn.recv()], [`/ack/q/${d4.id}`, `/extend/q/${d4.id} 10`]);
  conn.send({ type: "acked", queue: "q", id: d4.id });
  conn.send({ type: "error", code: "unknown_message", detail: "acked", queue: "q", id: d4.id });
  assert.equal(await extend4, false);
  await assert.rejects(d4.nack(-1), ClientError);
  await assert.rejects(d4.nack(1.5), ClientError);
  await assert.rejects(d4.extend(0), ClientError);
  await assert.rejects(d4.extend("10"), ClientError);
});

test("nack and extend of a lost connection resolve false", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const { conn, got } = await collecting(c, a);
  conn.message("q", msgId(1));
  const d = await got.get();
  const extending = d.extend(60);
  assert.equal(await conn.recv(), `/extend/q/${d.id} 60`);
  conn.kill();
  assert.equal(await extending, false);
  assert.equal(await d.nack(), false);
});

test("dedupe: an acked redelivery is acked again silently; a held one is dropped and its ack goes to the new connection", opts, async () => {
  const [a, b] = await nodes(2);
  const [c] = client([a.url, b.url], { dedupe: 100 });
  const { conn, got } = await collecting(c, a);
  conn.message("q", msgId(1));
  conn.message("q", msgId(2));
  const [d1, d2] = await take(got, 2);
  d1.ack(); // sent, but the node stops before `acked`
  assert.equal(await conn.recv(), `/ack/q/${d1.id}`);
  conn.close(1001, "server shutting down");
  const second = await b.accept();
  assert.equal(await second.recv(), "/subscribe/q");
  second.send({ type: "subscribed", queue: "q" });
  second.message("q", msgId(1), "again", 2); // acked before: acked again, not handed over
  assert.equal(await second.recv(), `/ack/q/${msgId(1)}`);
  second.message("q", msgId(2), "again", 2); // still being handled: dropped
  second.message("q", msgId(3));
  const d3 = await got.get();
  assert.equal(d3.id, msgId(3)); // nothing of 1 or 2 came in between
  assert.equal(await d2.ack(), true); // delivered on the first connection, held on this one
  assert.equal(await second.recv(), `/ack/q/${msgId(2)}`);
  // A nacked id is forgotten: its redelivery is handed over again.
  const nacking = d3.nack();
  assert.equal(await second.recv(), `/nack/q/${msgId(3)}`);
  second.send({ type: "nacked", queue: "q", id: msgId(3) });
  assert.equal(await nacking, true);
  second.message("q", msgId(3), "back", 2);
  assert.equal((await got.get()).rc, 2);
});

test("dedupe is bounded: the oldest ids are forgotten", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url], { dedupe: 2 });
  const { conn, got } = await collecting(c, a);
  for (let i = 1; i <= 3; i += 1) conn.message("q", msgId(i));
  for (const d of await take(got, 3)) d.ack();
  await conn.recv();
  conn.message("q", msgId(1)); // forgotten: handed over again
  conn.message("q", msgId(3)); // remembered: re-acked silently
  assert.equal((await got.get()).id, msgId(1));
  assert.equal(await conn.recv(), `/ack/q/${msgId(3)}`);
});

test("deliveries not yet handed to the handler when the connection drops are dropped", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const handled = [];
  let release;
  const blocked = new Promise((resolve) => {
    release = resolve;
  });
  const first = new Inbox();
  const sub = c.subscribe("q", async (d) => {
    handled.push(d.id);
    first.put(d);
    if (handled.length === 1) await blocked;
  });
  const conn = await a.accept();
  await conn.recv();
  conn.send({ type: "subscribed", queue: "q" });
  await sub.ready;
  for (let i = 1; i <= 3; i += 1) conn.message("q", msgId(i));
  await first.get();
  conn.kill();
  await events.next("disconnected");
  release();
  const again = await a.accept();
  await again.recv();
  again.message("q", msgId(2), "again", 2);
  assert.equal((await first.get()).rc, 2);
  assert.deepEqual(handled, [msgId(1), msgId(2)]); // 2 and 3 of the old connection never ran
});

test("concurrency: n handlers at once, in arrival order", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const started = new Inbox();
  const gates = [];
  const sub = c.subscribe("q", (d) => new Promise((resolve) => {
    gates.push(resolve);
    started.put(d.id);
  }), { concurrency: 2 });
  const conn = await a.accept();
  await conn.recv();
  conn.send({ type: "subscribed", queue: "q" });
  await sub.ready;
  for (let i = 1; i <= 3; i += 1) conn.message("q", msgId(i));
  assert.deepEqual([await started.get(), await started.get()], [msgId(1), msgId(2)]);
  assert.equal(started.size, 0);
  gates[0]();
  assert.equal(await started.get(), msgId(3));
  assert.throws(() => c.subscribe("q2", () => {}, { concurrency: 0 }), ClientError);
});

test("a handler that throws: a HandlerFailed error event, nothing settled, the stream goes on", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const sub = c.subscribe("q", async (d) => {
    if (d.id === msgId(1)) throw new Error("boom");
    await d.ack();
  });
  const conn = await a.accept();
  await conn.recv();
  conn.send({ type: "subscribed", queue: "q" });
  await sub.ready;
  conn.message("q", msgId(1));
  conn.message("q", msgId(2));
  const [error] = await events.next("error");
  assert.ok(error instanceof HandlerFailed);
  assert.equal(error.delivery.id, msgId(1));
  assert.equal(error.cause.message, "boom");
  assert.equal(error.fatal, false);
  assert.equal(await conn.recv(), `/ack/q/${msgId(2)}`);
});

test("send: waits for a connection, resolves with the id; errors reject it", opts, async () => {
  const [a, b] = await nodes(2);
  const [c] = client([a.url, b.url]);
  const first = c.send("chat", "hi there\nsecond line");
  const conn = await a.accept();
  assert.equal(await conn.recv(), "/send/chat hi there\nsecond line");
  conn.send({ type: "sent", queue: "chat", id: msgId(1) });
  assert.equal(await first, msgId(1));
  const refused = c.send("chat", "x");
  await conn.recv();
  conn.send({ type: "error", code: "forbidden", detail: "not allowed to send to chat", queue: "chat" });
  const error = await refused.catch((e) => e);
  assert.ok(error instanceof CommandFailed);
  assert.deepEqual([error.errorCode, error.queue], ["forbidden", "chat"]);
  const lost = c.send("chat", "y");
  await conn.recv();
  conn.kill();
  await assert.rejects(lost, ConnectionClosed);
  await assert.rejects(c.send("bad name", "x"), ClientError);
  await assert.rejects(c.send("QUEUES", "x"), ClientError);
  await assert.rejects(c.send("chat", 42), ClientError);
});

test("a refused subscription: ready rejects, an error event, not renewed", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const refused = c.subscribe("other", () => {});
  const kept = c.subscribe("mine", () => {});
  const conn = await a.accept();
  assert.deepEqual([await conn.recv(), await conn.recv()], ["/subscribe/other", "/subscribe/mine"]);
  conn.send({ type: "error", code: "forbidden", detail: "not allowed to subscribe to other", queue: "other" });
  conn.send({ type: "subscribed", queue: "mine" });
  const error = await refused.ready.catch((e) => e);
  assert.ok(error instanceof CommandFailed);
  assert.equal(error.errorCode, "forbidden");
  assert.equal((await events.next("error"))[0], error);
  await kept.ready;
  assert.equal(refused.active, false);
  conn.close(1012, "server restarting");
  const again = await a.accept();
  assert.equal(await again.recv(), "/subscribe/mine");
  again.send({ type: "subscribed", queue: "mine" });
  assert.equal(again.received.size, 0);
  assert.throws(() => c.subscribe("mine", () => {}), /already subscribed/);
  assert.throws(() => c.subscribe("bad/name", () => {}), ClientError);
});

test("unsubscribe: the frame, no more deliveries, not renewed, acks of before flushed first", opts, async () => {
  const [a] = await nodes(1);
  const [c] = client([a.url]);
  const { conn, got, sub } = await collecting(c, a);
  conn.message("q", msgId(1));
  const d = await got.get();
  d.ack();
  await sub.unsubscribe();
  assert.deepEqual([await conn.recv(), await conn.recv()], [`/ack/q/${d.id}`, "/unsubscribe/q"]);
  conn.message("q", msgId(2));
  conn.close(1012, "server restarting");
  const again = await a.accept();
  c.subscribe("other", () => {});
  assert.equal(await again.recv(), "/subscribe/other"); // not /subscribe/q
  assert.equal(got.size, 0);
});

test("close(): acks queued in its turn still go out, then a 1000 close; later calls fail", opts, async () => {
  const [a] = await nodes(1);
  const [c, events] = client([a.url]);
  const { conn, got, sub } = await collecting(c, a);
  conn.message("q", msgId(1));
  const d = await got.get();
  d.ack();
  await c.close();
  assert.equal(await conn.recv(), `/ack/q/${d.id}`);
  assert.equal((await conn.closed).code, 1000);
  assert.equal(sub.active, false);
  await assert.rejects(c.send("q", "x"), ClientError);
  assert.equal(c.connected, false);
  assert.equal(events.count("error"), 0);
});

test("legacy: no subprotocol, {message} deliveries, ack a no-op, send/nack/extend refused", opts, async () => {
  const [a] = await nodes(1, { legacy: true });
  const [c] = client([a.url], { legacy: true });
  const got = new Inbox();
  c.subscribe("u1", (d) => got.put(d));
  const conn = await a.accept();
  assert.equal(conn.protocol, "");
  assert.equal(await conn.recv(), "/subscribe/u1");
  conn.send({ message: '{"json":true}' });
  const d = await got.get();
  assert.deepEqual([d.queue, d.id, d.rc, d.sent, d.message], ["u1", "", 0, 0, '{"json":true}']);
  assert.equal(await d.ack(), true);
  await assert.rejects(d.nack(), ClientError);
  await assert.rejects(d.extend(5), ClientError);
  await assert.rejects(c.send("u1", "x"), /read-only/);
  assert.throws(() => c.subscribe("u2", () => {}), /one subscription/);
  conn.send({ type: "error", code: "forbidden", detail: "nope", queue: "u1" }); // no `message` key
  assert.equal(got.size, 0);
  await nextTurn();
  assert.equal(conn.received.size, 0); // the ack sent nothing
});

// Authentication: handshake headers (the `ws` package) or the first frame (browsers), refresh.
import assert from "node:assert/strict";
import { after, test } from "node:test";

import { connect } from "../wsmq-client.js";
import { BrowserLikeWebSocket, Recorder, ScriptedNode, WebSocket, tokenSource } from "./scripted.js";

const opts = { timeout: 20000 };
const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function node(options) {
  const started = await new ScriptedNode(options).start();
  cleanups.push(() => started.stop());
  return started;
}

function client(urls, options = {}) {
  const c = connect(urls, { tokens: tokenSource(), WebSocket, shuffle: false, ...options });
  cleanups.push(() => c.close());
  return [c, new Recorder(c)];
}

test("the ws package: tokens as handshake headers, wsmq.v1 offered, no /auth frame", opts, async () => {
  const a = await node();
  const [c] = client([a.url]);
  assert.equal(c.headerAuth, true);
  c.subscribe("q", () => {});
  const conn = await a.accept();
  assert.deepEqual([conn.headers["x-token"], conn.headers["x-access-token"]], ["x1", "a1"]);
  assert.equal(conn.protocol, "wsmq.v1");
  assert.equal(await conn.recv(), "/subscribe/q");
  await c.ready;
  assert.equal(c.connected, true);
});

test("a browser-like WebSocket: /auth first, nothing else before `authenticated`", opts, async () => {
  const a = await node();
  const [c, events] = client([a.url], { WebSocket: BrowserLikeWebSocket });
  assert.equal(c.headerAuth, false);
  c.subscribe("q", () => {});
  const sending = c.send("q", "hello");
  const conn = await a.accept();
  assert.equal(conn.headers["x-token"], undefined);
  assert.equal(conn.protocol, "wsmq.v1");
  assert.equal(await conn.recv(), "/auth x1 a1");
  assert.equal(c.connected, false);
  assert.equal(events.count("connected"), 0);
  assert.equal(conn.received.size, 0);
  conn.send({ type: "authenticated", user: "u1", exp: 1700000900 });
  assert.deepEqual((await events.next("connected"))[0], a.url);
  assert.deepEqual([await conn.recv(), await conn.recv()], ["/subscribe/q", "/send/q hello"]);
  conn.send({ type: "sent", queue: "q", id: "lq3x0w9z8yABCDEFghijklmnopqrstuv" });
  assert.equal(await sending, "lq3x0w9z8yABCDEFghijklmnopqrstuv");
});

test("auth: 'frame' forces first-frame auth with the ws package too", opts, async () => {
  const a = await node();
  const [c] = client([a.url], { auth: "frame" });
  assert.equal(c.headerAuth, false);
  const conn = await a.accept();
  assert.equal(await conn.recv(), "/auth x1 a1");
});

test("expiring: tokens() again and /refresh <new x-token> on the same socket", opts, async () => {
  const a = await node();
  const tokens = tokenSource();
  const [c, events] = client([a.url], { tokens });
  c.subscribe("q", () => {});
  const conn = await a.accept();
  assert.equal(await conn.recv(), "/subscribe/q");
  conn.send({ type: "expiring", seconds: 60 });
  assert.equal(await conn.recv(), "/refresh x2");
  conn.send({ type: "refreshed", exp: 1700001800 });
  assert.equal(tokens.calls, 2);
  // A reconnect later uses the refreshed tokens.
  conn.close(1012, "server restarting");
  const again = await a.accept();
  assert.equal(again.headers["x-token"], "x2");
  assert.equal(events.count("error"), 0);
});

test("a refresh that fails in tokens() is an error event; the connection stays", opts, async () => {
  const a = await node();
  let calls = 0;
  const tokens = async () => {
    calls += 1;
    if (calls > 1) throw new Error("refresh endpoint down");
    return ["x1", "a1"];
  };
  const [c, events] = client([a.url], { tokens });
  const conn = await a.accept();
  conn.send({ type: "expiring", seconds: 60 });
  const [error] = await events.next("error");
  assert.match(error.message, /refresh endpoint down/);
  assert.equal(error.fatal, false);
  assert.equal(c.error, null);
  assert.equal(c.connected, true);
});

test("refresh_failed is reported as an error event", opts, async () => {
  const a = await node();
  const [, events] = client([a.url]);
  const conn = await a.accept();
  conn.send({ type: "error", code: "refresh_failed", detail: "token belongs to another user" });
  const [error] = await events.next("error");
  assert.equal(error.errorCode, "refresh_failed");
  assert.equal(error.fatal, false);
});

test("legacy + first-frame auth: /auth then the subscribe at once (no reply to wait for)", opts, async () => {
  const a = await node({ legacy: true });
  const [c] = client([a.url], { legacy: true, WebSocket: BrowserLikeWebSocket });
  c.subscribe("u1", () => {});
  const conn = await a.accept();
  assert.equal(conn.protocol, "");
  assert.deepEqual([await conn.recv(), await conn.recv()], ["/auth x1 a1", "/subscribe/u1"]);
});

test("Node's global WebSocket (Node >= 22, or 20 with --experimental-websocket): first-frame auth end to end", opts, async (t) => {
  if (typeof globalThis.WebSocket !== "function") {
    t.skip("no global WebSocket in this Node version");
    return;
  }
  const [a, b] = [await node(), await node()];
  const [c, events] = client([a.url, b.url], { WebSocket: undefined });
  assert.equal(c.headerAuth, false);
  const got = [];
  c.subscribe("q", async (d) => {
    got.push(d.id);
    await d.ack();
  });
  const conn = await a.accept();
  assert.equal(conn.headers["x-token"], undefined);
  assert.equal(conn.protocol, "wsmq.v1");
  assert.equal(await conn.recv(), "/auth x1 a1");
  conn.send({ type: "authenticated", user: "u1", exp: null });
  assert.equal(await conn.recv(), "/subscribe/q");
  conn.send({ type: "subscribed", queue: "q" });
  conn.message("q", "lq3x0v1a2bCDEFghijklmnopqrstuvwx");
  assert.equal(await conn.recv(), "/ack/q/lq3x0v1a2bCDEFghijklmnopqrstuvwx");
  conn.close(1001, "server shutting down");
  const second = await b.accept();
  assert.equal(await second.recv(), "/auth x1 a1");
  second.close(4401, "token expired");
  const third = await a.accept();
  assert.equal(await third.recv(), "/auth x2 a2");
  third.send({ type: "authenticated", user: "u1", exp: null });
  assert.equal(await third.recv(), "/subscribe/q");
  assert.deepEqual(
    events.log.filter(([n]) => n === "disconnected").map(([, code]) => code), [1001, 4401],
  );
  assert.equal(events.count("error"), 0);
});

// The live failover run of wsmq-client against real wsmq nodes, a test of Node's test runner
// (`node:test`) run in this process by tests/client/test_js_client_e2e.py with
// `--test-reporter-destination=stderr`: the Python test starts Redis and the nodes, kills and
// stops them and checks Redis; this side asserts what the application saw.
//
// Environment: WSMQ_URLS (comma-separated), WSMQ_X_TOKEN, WSMQ_ACCESS_TOKEN, WSMQ_QUEUE,
// WSMQ_EXPECT (messages in the queue), WSMQ_PAUSE_AT (comma-separated handled counts at which
// the handler stops before acking until stdin says `go`), WSMQ_DEDUPE, WSMQ_NODE_MODULES.
// stdout: one JSON object per line (events, `paused`, `all`, then `done` with the figures).
// stdin: `go` (resume a paused handler), `stop` (close the client and report).
import assert from "node:assert/strict";
import { createInterface } from "node:readline";
import test from "node:test";

import { connect } from "../wsmq-client.js";
import { WebSocket } from "./scripted.js";

const env = process.env;
const expect = Number(env.WSMQ_EXPECT);
const pauseAt = new Set((env.WSMQ_PAUSE_AT ?? "").split(",").filter(Boolean).map(Number));
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const commands = { go: [], stop: [] };
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const waiter = commands[line.trim()]?.shift();
  if (waiter) waiter();
});
const command = (name) => new Promise((resolve) => commands[name].push(resolve));

test("wsmq-client hands every message to the application across a killed and a stopped node", async () => {
  const client = connect(env.WSMQ_URLS.split(","), {
    tokens: async () => [env.WSMQ_X_TOKEN, env.WSMQ_ACCESS_TOKEN],
    WebSocket,
    shuffle: false,
    dedupe: Number(env.WSMQ_DEDUPE ?? 0),
    backoff: { base: 50, cap: 500 },
  });
  client.on("connected", (node) => out({ event: "connected", node }));
  client.on("disconnected", (code, reason, node) => out({ event: "disconnected", code, reason, node }));
  client.on("error", (error) => out({ event: "error", fatal: error.fatal, message: error.message }));

  const counts = new Map(); // id -> times handled
  let handled = 0;
  let staleAcks = 0; // acks refused because their connection was gone (delivered again)
  let allSeen = false;
  client.subscribe(env.WSMQ_QUEUE, async (d) => {
    handled += 1;
    counts.set(d.id, (counts.get(d.id) ?? 0) + 1);
    if (pauseAt.has(handled)) {
      out({ event: "paused", handled });
      await command("go");
    }
    if (!(await d.ack())) staleAcks += 1;
    if (!allSeen && counts.size === expect) {
      allSeen = true;
      out({ event: "all", handled });
    }
  });

  await command("stop");
  await client.close();
  lines.close();
  process.stdin.destroy(); // from here only a handle the client leaked could keep Node running
  out({
    event: "done",
    handled,
    unique: counts.size,
    duplicates: handled - counts.size,
    staleAcks,
    ids: [...counts.keys()],
  });
  // What the application saw: every message in the queue, each handled and acked.
  assert.equal(counts.size, expect);
  if (Number(env.WSMQ_DEDUPE ?? 0) > 0) assert.equal(handled, counts.size); // none twice
  else assert.ok(handled >= counts.size);
  assert.ok(staleAcks >= pauseAt.size); // the paused deliveries' connections were gone
});

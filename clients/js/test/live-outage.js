// wsmq-client against a real node whose Redis goes down, driven by
// tests/client/test_js_client_outage_e2e.py (not a `node --test` file: the Python test owns
// Redis and the node).
//
// Environment: WSMQ_URL, WSMQ_X_TOKEN, WSMQ_ACCESS_TOKEN, WSMQ_QUEUE, WSMQ_NODE_MODULES.
// stdout: one JSON object per line: the client's events, `ready` (sub.ready resolved), each
// `message` (acked with confirm), `done`. stdin: `stop`.
import { createInterface } from "node:readline";

import { connect } from "../wsmq-client.js";
import { WebSocket } from "./scripted.js";

const env = process.env;
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const client = connect([env.WSMQ_URL], {
  tokens: async () => [env.WSMQ_X_TOKEN, env.WSMQ_ACCESS_TOKEN],
  WebSocket,
  backoff: { base: 100, cap: 500 },
});
client.on("connected", (node) => out({ event: "connected", node }));
client.on("subscribed", (queue, device, node) => out({ event: "subscribed", queue, device, node }));
client.on("error", (error) => out({ event: "error", fatal: error.fatal, code: error.errorCode ?? error.code }));

const sub = client.subscribe(env.WSMQ_QUEUE, async (d) => {
  out({ event: "message", message: d.message, acked: await d.ack({ confirm: true }) });
});
sub.ready.then(
  () => out({ event: "ready", active: sub.active }),
  (error) => out({ event: "refused", code: error.errorCode }),
);

const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.on("line", (line) => line.trim() === "stop" && resolve()));
await client.close();
lines.close();
process.stdin.destroy();
out({ event: "done" });

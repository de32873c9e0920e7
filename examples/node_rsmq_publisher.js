// Publish into a wsmq queue from Node.js with the `rsmq` package, as the original websocketmq
// README did: wsmq keeps RSMQ's Redis layout, so rsmq and wsmq read and write the same queues.
//
//   npm install --prefix examples        # once: ws and rsmq, pinned in examples/package.json
//   node examples/node_rsmq_publisher.js QUEUE "hello" [redis://127.0.0.1:6379/0]
//
// `realtime: true` makes rsmq PUBLISH on rsmq:rt:<queue> after each send, so wsmq delivers at
// once; without it wsmq still delivers, from its fallback poll (default every second).
"use strict";

const RedisSMQ = require("rsmq");

const [qname, message, redisUrl = "redis://127.0.0.1:6379/0"] = process.argv.slice(2);
if (!qname || message === undefined) {
  console.error("usage: node examples/node_rsmq_publisher.js QUEUE MESSAGE [REDIS_URL]");
  process.exit(2);
}

const url = new URL(redisUrl);
const rsmq = new RedisSMQ({
  host: url.hostname,
  port: Number(url.port || 6379),
  ns: "rsmq", // wsmq's default namespace
  realtime: process.env.WSMQ_RSMQ_REALTIME !== "0",
});

// The original's publisher: sendMessage({qname, message}, cb). The queue must exist (a
// subscriber creates it, or `wsmq queue create QUEUE`).
rsmq.sendMessage({ qname, message }, (err, id) => {
  if (err) {
    console.error(JSON.stringify({ error: err.name, message: err.message }));
    process.exitCode = 1;
  } else {
    console.log(JSON.stringify({ queue: qname, id }));
  }
  rsmq.quit();
});

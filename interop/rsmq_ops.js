#!/usr/bin/env node
// Drive the real npm `rsmq` (pinned 0.12.4) from another program, one process for many calls.
//
//   NODE_PATH=.npm-interop/node_modules node interop/rsmq_ops.js '{"host":"127.0.0.1","port":6379}'
//
// Protocol: one JSON value per stdin line, one JSON line per answer on stdout, in order.
//   {"op": "sendMessage", "args": {"qname": "q", "message": "hi"}}       -> {"ok": "<id>"}
//   [{"op": ...}, {"op": ...}]   (a batch, run in sequence)              -> [{"ok": ...}, ...]
// A failed call answers {"error": {"name": "queueNotFound", "message": "Queue not found"}}.
// Ops: every RSMQ method (createQueue, deleteQueue, listQueues, getQueueAttributes,
// setQueueAttributes, sendMessage, receiveMessage, popMessage, deleteMessage,
// changeMessageVisibility) on an instance with realtime off, or on one with realtime on when the
// op has "realtime": true; plus
//   {"op": "redis", "args": ["HGETALL", "rsmq:q:Q"]}   a raw command (strings in, strings out)
//   {"op": "subscribe", "args": {"channel": "rsmq:rt:q"}}   answered once the subscription holds
//   {"op": "nextMessages", "args": {"count": 2, "timeoutMs": 5000}}  pub/sub messages seen so far
//   {"op": "length", "args": {"message": "..."}}   JavaScript's String length (UTF-16 units)
//   {"op": "worker", "args": {"qname": "q", "count": 3, "timeoutMs": 5000}}  run the original
//       product's consumer, npm rsmq-worker 0.5.2, until it has processed (and, as the original
//       did, deleted) `count` messages; answers [{id, message}, ...] in processing order
//   {"op": "ping"}
// Config (argv[2], JSON): host, port, ns (default "rsmq"), db (default 0).
// The process exits when stdin closes; it never prints anything but answers on stdout.
"use strict";

const readline = require("readline");
const RedisSMQ = require("rsmq");
const redisLib = require("redis");

const config = Object.assign({ host: "127.0.0.1", port: 6379, ns: "rsmq", db: 0 }, JSON.parse(process.argv[2] || "{}"));
const clientOptions = { host: config.host, port: config.port, db: config.db };

const instances = {};
function rsmq(realtime) {
  const key = realtime ? "rt" : "plain";
  if (!instances[key]) {
    // rsmq 0.12.4 passes its options to redis.createClient, so `db` selects the database.
    instances[key] = new RedisSMQ(Object.assign({ ns: config.ns, realtime: !!realtime }, clientOptions));
  }
  return instances[key];
}

let rawClient = null;
function raw() {
  if (!rawClient) rawClient = redisLib.createClient(clientOptions);
  return rawClient;
}

let subClient = null;
const seen = [];
const waiters = [];
function notifyWaiters() {
  for (let i = waiters.length - 1; i >= 0; i--) {
    const w = waiters[i];
    if (seen.length >= w.count) {
      waiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(seen.splice(0, w.count));
    }
  }
}
function subscriber() {
  if (!subClient) {
    subClient = redisLib.createClient(clientOptions);
    subClient.on("message", (channel, message) => {
      seen.push({ channel, message });
      notifyWaiters();
    });
  }
  return subClient;
}

function runWorker(args) {
  const RSMQWorker = require("rsmq-worker");
  return new Promise((resolve, reject) => {
    const worker = new RSMQWorker(args.qname, {
      host: config.host, port: config.port, options: { db: config.db }, redisPrefix: config.ns,
      interval: [0, 0.05], invisibletime: 30, autostart: true,
    });
    const got = [];
    let deleted = 0;
    const finish = (err) => {
      clearTimeout(timer);
      worker.quit();
      if (err) reject(err); else resolve(got);
    };
    const timer = setTimeout(() => {
      const err = new Error(`timeout: worker processed ${got.length}, deleted ${deleted} of ${args.count}`);
      err.name = "timeout";
      finish(err);
    }, args.timeoutMs || 5000);
    worker.on("message", (message, next, id) => {
      got.push({ id, message });
      next();
    });
    worker.on("deleted", () => {
      deleted += 1;
      if (deleted >= args.count) finish(null);
    });
    worker.on("error", (err) => finish(err instanceof Error ? err : new Error(String(err))));
  });
}

const RSMQ_METHODS = new Set([
  "createQueue", "deleteQueue", "listQueues", "getQueueAttributes", "setQueueAttributes",
  "sendMessage", "receiveMessage", "popMessage", "deleteMessage", "changeMessageVisibility",
]);

function callRsmq(req) {
  const inst = rsmq(req.realtime);
  const method = inst[req.op + "Async"];
  return req.op === "listQueues" ? method() : method(req.args || {});
}

function run(req) {
  if (RSMQ_METHODS.has(req.op)) return callRsmq(req);
  switch (req.op) {
    case "ping":
      return Promise.resolve("pong");
    case "length":
      return Promise.resolve(req.args.message.length);
    case "redis":
      return new Promise((resolve, reject) => {
        const [cmd, ...rest] = req.args;
        raw().send_command(cmd, rest, (err, res) => (err ? reject(err) : resolve(res)));
      });
    case "subscribe":
      return new Promise((resolve, reject) => {
        subscriber().subscribe(req.args.channel, (err) => (err ? reject(err) : resolve(req.args.channel)));
      });
    case "worker":
      return runWorker(req.args);
    case "nextMessages":
      return new Promise((resolve, reject) => {
        const w = { count: req.args.count || 1, resolve };
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          const err = new Error(`timeout: ${seen.length} of ${w.count} pub/sub messages`);
          err.name = "timeout";
          err.seen = seen.slice();
          reject(err);
        }, req.args.timeoutMs || 5000);
        waiters.push(w);
        notifyWaiters();
      });
    default:
      return Promise.reject(Object.assign(new Error(`unknown op ${req.op}`), { name: "unknownOp" }));
  }
}

async function answer(req) {
  try {
    const ok = await run(req);
    return { ok: ok === undefined ? null : ok };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    return { error: { name: e.name, message: e.message, seen: e.seen } };
  }
}

// Answers go out in request order even though calls are asynchronous.
let chain = Promise.resolve();
const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  chain = chain.then(async () => {
    let out;
    try {
      const req = JSON.parse(line);
      if (Array.isArray(req)) {
        out = [];
        for (const r of req) out.push(await answer(r));
      } else {
        out = await answer(req);
      }
    } catch (err) {
      out = { error: { name: "badRequest", message: String(err) } };
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  });
});
rl.on("close", () => {
  chain.then(() => {
    for (const inst of Object.values(instances)) inst.quit();
    if (rawClient) rawClient.quit();
    if (subClient) subClient.quit();
    // Do not wait for QUIT replies: a dead Redis must not keep the helper alive.
    setTimeout(() => process.exit(0), 200).unref();
  });
});

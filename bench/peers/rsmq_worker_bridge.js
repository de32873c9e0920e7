#!/usr/bin/env node
// Benchmark peer: the original websocketmq architecture, rebuilt from its description.
//
// A `ws` server; every `/subscribe/<queue>` frame starts one rsmq-worker (its own Redis
// connection, its polling back-off [0, 1, 5, 10] s, one message at a time) for that socket; each
// message is sent as `{"message": body}` and then `next()` deletes it from the queue, without any
// client acknowledgement. Authentication is not checked (any headers are accepted): the benchmark
// measures delivery, and the original's token check crashed on rejection anyway.
//
// Differences from the original, on purpose: a malformed frame or queue name gets an error frame
// instead of crashing the process, and a closed socket stops its worker without deleting the queue
// (the original deleted it, which would make repeated runs meaningless).
//
//   node rsmq_worker_bridge.js --port 8080 --redis-url redis://127.0.0.1:6379/0
// Needs NODE_PATH pointing at the pinned npm packages (rsmq, rsmq-worker, ws).
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');
const RSMQWorker = require('rsmq-worker');

function parseArgs(argv) {
  const args = { host: '127.0.0.1', port: 8080, redisUrl: 'redis://127.0.0.1:6379/0', ns: 'rsmq' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i];
    const value = argv[i + 1];
    if (key === '--host') args.host = value;
    else if (key === '--port') args.port = Number(value);
    else if (key === '--redis-url') args.redisUrl = value;
    else if (key === '--ns') args.ns = value;
    else throw new Error(`unknown argument ${key}`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const redisUrl = new URL(args.redisUrl);
const redisHost = redisUrl.hostname || '127.0.0.1';
const redisPort = Number(redisUrl.port || 6379);
const QNAME = /^[A-Za-z0-9_-]{1,160}$/;

const server = http.createServer((req, res) => {
  // Readiness probe for the harness; everything else is the WebSocket endpoint.
  res.writeHead(req.url === '/healthz' ? 200 : 404, { 'content-type': 'text/plain' });
  res.end(req.url === '/healthz' ? 'ok' : 'not found');
});
const wss = new WebSocketServer({ server, maxPayload: 64 * 1024 });

wss.on('connection', (ws) => {
  const workers = [];
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? '' : data.toString();
    if (!text.startsWith('/subscribe/')) {
      ws.send(JSON.stringify({ error: 'unknown_command' }));
      return;
    }
    const qname = text.slice('/subscribe/'.length);
    if (!QNAME.test(qname)) {
      ws.send(JSON.stringify({ error: 'invalid_queue' }));
      return;
    }
    const worker = new RSMQWorker(qname, {
      host: redisHost,
      port: redisPort,
      redisPrefix: args.ns,
      invisibletime: 30,
      autostart: true,
    });
    worker.on('message', (message, next) => {
      if (ws.readyState !== ws.OPEN) {
        next(false); // leave it in the queue: visible again after the worker's invisibletime
        return;
      }
      ws.send(JSON.stringify({ message }));
      next(); // deletes the message: no client acknowledgement, as in the original
    });
    worker.on('error', (err) => console.error('worker error', qname, err && err.message));
    workers.push(worker);
  });
  ws.on('close', () => {
    for (const worker of workers) worker.quit();
    workers.length = 0;
  });
  ws.on('error', () => {});
});

server.listen(args.port, args.host, () => {
  console.log(JSON.stringify({ event: 'listening', port: args.port }));
});

function shutdown() {
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

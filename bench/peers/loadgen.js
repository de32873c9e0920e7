#!/usr/bin/env node
// WebSocket load generator in Node.js (npm `ws`), the same job and the same JSON-lines control
// as bench/loadgen.py: `node loadgen.js @config.json` (or the JSON itself as the argument).
//
// Opens `clients` ({url, queue}) with the handshake `headers` (or an `auth_frame` sent first),
// subscribes, prints {"event":"ready"}, then counts messages until "stop" arrives on stdin,
// `expect` messages have arrived ("expect N GRACE" on stdin sets it for a publisher that is
// done), or `timeout` seconds pass; prints {"event":"result"}. `protocol` "v1" uses the wsmq.v1
// subprotocol and acks every message: what one read of the socket brought in one bulk
// `/ack/<q>/<id>,<id>,...` frame (`"ack_batch": false`: one frame per message). Bodies start with
// the publish time ("<epoch ms>|"), from which each message's latency is taken.
//
// Why Node: on a 2-core machine the clients share the CPU with the system under test. A Python
// aiohttp client spends several times the CPU per received frame that `ws` + JSON.parse do, so
// a Python client leaves less CPU to the servers and measures itself as much as them.
'use strict';

const fs = require('fs');
const readline = require('readline');
const WebSocket = require('ws');

const SERIES_STEP_MS = 100;
const MAX_ACK_IDS = 500;

function loadConfig(arg) {
  if (arg.startsWith('@')) {
    const path = arg.slice(1);
    const text = fs.readFileSync(path, 'utf8');
    fs.rmSync(path, { force: true });
    return JSON.parse(text);
  }
  return JSON.parse(arg);
}

const cfg = loadConfig(process.argv[2]);
const v1 = cfg.protocol === 'v1';
const keepLatency = Boolean(cfg.latency);
const emitEach = Boolean(cfg.emit_each);
const ackBatch = cfg.ack_batch !== false;
let expect = Number(cfg.expect || 0);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function exitAfterOutput(code) {
  // stdout is a pipe written asynchronously: exiting at once would cut a long result line
  // (latency samples) at the pipe's 64 KiB. Exit once everything written so far is flushed.
  process.stdout.write('', () => process.exit(code));
}

// Epoch ms with µs resolution. Not `performance.timeOrigin`: Node takes it from two clock reads
// at start-up, and a start-up preempted between them (a loaded machine) leaves it off by
// milliseconds; publisher and client then disagree by that much (the bench once measured an idle
// p50 of -0.9 ms). Date.now() - performance.now() is never above the true origin (Date.now()
// truncates to the ms; a preemption between the reads only lowers it): the largest of many
// reads (30 ms of them at start-up) is the origin to a few µs.
function estimateOrigin(reads) {
  let best = -Infinity;
  for (let i = 0; i < reads; i++) {
    const v = Date.now() - performance.now();
    if (v > best) best = v;
  }
  return best;
}
const epochOrigin = estimateOrigin(200000);

function nowMs() {
  return epochOrigin + performance.now();
}

const counter = { count: 0, bad: 0, firstT: 0, lastT: 0, latencies: [] };
const errors = [];
let finish = null; // resolves the run once set

function record(body) {
  const now = nowMs();
  counter.count += 1;
  if (counter.count === 1) counter.firstT = now / 1000;
  counter.lastT = now / 1000;
  if (keepLatency || emitEach) {
    const bar = typeof body === 'string' ? body.indexOf('|') : -1;
    const sent = bar > 0 ? Number(body.slice(0, bar)) : NaN;
    if (Number.isNaN(sent)) {
      counter.bad += 1;
    } else {
      const latency = now - sent;
      if (keepLatency) counter.latencies.push(Math.round(latency * 1000) / 1000);
      if (emitEach) emit({ event: 'msg', latency_ms: latency });
    }
  }
  if (expect && counter.count >= expect && finish) finish('expect');
}

class AckBatcher {
  // One bulk /ack frame per queue for what one read of the socket brought: `ws` emits every
  // frame of a read before the event loop moves on, so a setImmediate flush sees them all.
  constructor(ws) {
    this.ws = ws;
    this.pending = new Map();
    this.scheduled = false;
  }

  add(queue, id) {
    let ids = this.pending.get(queue);
    if (!ids) this.pending.set(queue, (ids = []));
    ids.push(id);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush() {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = new Map();
    if (this.ws.readyState !== WebSocket.OPEN) return; // a closing socket: the result says what arrived
    for (const [queue, ids] of pending) {
      for (let i = 0; i < ids.length; i += MAX_ACK_IDS) {
        this.ws.send(`/ack/${queue}/${ids.slice(i, i + MAX_ACK_IDS).join(',')}`);
      }
    }
  }
}

function fail(message) {
  emit({ event: 'error', message });
  exitAfterOutput(1);
}

function openSocket(client) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(client.url, v1 ? ['wsmq.v1'] : [], {
      headers: cfg.headers || {},
      perMessageDeflate: false,
      maxPayload: 0,
    });
    ws.once('open', () => {
      ws.on('error', () => {}); // a socket dying mid-run shows in the counts
      read(ws);
      if (cfg.auth_frame) ws.send(String(cfg.auth_frame));
      resolve(ws);
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused: HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function subscribe(ws, queue) {
  // The socket's reader is attached already (see read): frames that arrive before the reply
  // are counted and acked like any other, so none is dropped while the others subscribe.
  ws.send(`/subscribe/${queue}`);
  if (!v1) return Promise.resolve(); // legacy peers have no reply to wait for
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`subscribe ${queue}: no reply within 10 s`)), 10000);
    const onClose = () => reject(new Error(`socket closed while subscribing ${queue}`));
    ws.once('close', onClose);
    ws.onSubscribeReply = (frame) => {
      clearTimeout(timer);
      ws.off('close', onClose);
      ws.onSubscribeReply = null;
      if (frame.type === 'subscribed') resolve();
      else reject(new Error(`subscribe ${queue} refused: ${JSON.stringify(frame)}`));
    };
  });
}

function read(ws) {
  const acks = ackBatch ? new AckBatcher(ws) : null;
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    let frame;
    try {
      frame = JSON.parse(data.toString());
    } catch {
      counter.bad += 1;
      return;
    }
    if (frame === null || typeof frame !== 'object') {
      counter.bad += 1;
      return;
    }
    if (ws.onSubscribeReply && (frame.type === 'subscribed' || frame.type === 'error')) {
      ws.onSubscribeReply(frame);
      return;
    }
    if (frame.type === 'error' || 'error' in frame) {
      // A refused subscription would look like a slow system: fail the run loudly instead.
      const error = String(frame.code || frame.error || JSON.stringify(frame));
      errors.push(error);
      emit({ event: 'error', message: `server error frame: ${error}: ${data.toString().slice(0, 200)}` });
      return;
    }
    if (v1) {
      if (frame.type !== 'message') return;
      if (acks) acks.add(frame.queue, frame.id);
      else ws.send(`/ack/${frame.queue}/${frame.id}`);
    } else if (!('message' in frame)) {
      return;
    }
    record(String(frame.message));
  });
}

async function limited(items, concurrency, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

async function main() {
  const clients = cfg.clients;
  const started = performance.now();
  const sockets = await limited(clients, Number(cfg.connect_concurrency || 64), openSocket);
  const connectS = (performance.now() - started) / 1000;
  await Promise.all(sockets.map((ws, i) => subscribe(ws, clients[i].queue)));
  emit({ event: 'ready', connect_s: connectS, connections: sockets.length });
  const subscribedT = nowMs() / 1000;
  const series = [];
  const sampler = setInterval(() => series.push([nowMs() / 1000, counter.count]), SERIES_STEP_MS);
  series.push([nowMs() / 1000, counter.count]);

  await new Promise((resolve) => {
    let graceTimer = null;
    finish = (why) => {
      finish = null;
      if (graceTimer) clearTimeout(graceTimer);
      resolve(why);
    };
    if (cfg.timeout) setTimeout(() => finish && finish('timeout'), Number(cfg.timeout) * 1000);
    if (expect && counter.count >= expect) finish('expect'); // all in before the control was set
    const lines = readline.createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      const words = line.trim().split(/\s+/);
      if (!finish) return;
      if (words[0] === 'stop') finish('stop');
      else if (words[0] === 'expect') {
        // the publisher is done: whatever has not arrived GRACE seconds from now is late
        expect = Number(words[1]);
        if (counter.count >= expect) finish('expect');
        else graceTimer = setTimeout(() => finish && finish('grace'), Number(words[2]) * 1000);
      }
    });
    lines.on('close', () => finish && finish('stdin closed'));
  });
  clearInterval(sampler);
  series.push([nowMs() / 1000, counter.count]);
  for (const ws of sockets) ws.terminate();
  emit({
    event: 'result',
    count: counter.count,
    bad: counter.bad,
    errors: errors.slice(0, 10),
    subscribed_t: subscribedT,
    first_t: counter.firstT,
    last_t: counter.lastT,
    series,
    latencies: counter.latencies,
  });
  exitAfterOutput(0);
}

main().catch((err) => fail(String(err && err.stack ? err.stack : err)));

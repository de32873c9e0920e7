#!/usr/bin/env node
// Load generator: publishes benchmark messages, to RSMQ queues (npm `rsmq`, realtime on, so
// wsmq wakes at once; rsmq-worker ignores the notification) or to Redis pub/sub channels.
// With `send_script` (wsmq's send.lua with its prelude, as `wsmq.send_message` runs it) a queue
// message is stored and announced in one EVALSHA round trip instead of rsmq's three.
//
// Control over stdio, one JSON object per line on stdout: {"event":"ready"} once connected, then
// it waits for "go" on stdin; {"event":"result", ...} at the end. In "step" mode every "send" line
// on stdin publishes one message and answers {"event":"sent"}; "stop" ends it.
// Body: "<epoch ms with µs>|" padded with "x" to `size` characters, so receivers can compute
// publish-to-receive latency.
'use strict';

const readline = require('readline');
const redis = require('redis');
const RedisSMQ = require('rsmq');

const cfg = JSON.parse(process.argv[2]);
const url = new URL(cfg.redis);
const host = url.hostname || '127.0.0.1';
const port = Number(url.port || 6379);
const queues = cfg.queues;
const size = cfg.size || 100;
const windowSize = cfg.window || 64;
const backlogCap = cfg.backlog_cap || 0;

const client = redis.createClient({ host, port });
client.on('error', (err) => emit({ event: 'log', message: String(err) }));
const rsmq = cfg.kind === 'rsmq' ? new RedisSMQ({ client, ns: cfg.ns || 'rsmq', realtime: true }) : null;
const ns = cfg.ns || 'rsmq';
const sendScript = cfg.send_script || null;
let sendSha = null;
const ID_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function idSuffix() {
  // 22 characters of [A-Za-z0-9] from a CSPRNG, as wsmq's ids.random_suffix
  const bytes = require('crypto').randomBytes(22);
  let out = '';
  for (let i = 0; i < 22; i++) out += ID_CHARS[bytes[i] % 62];
  return out;
}

function wsmqSend(qname, message, cb) {
  const suffix = idSuffix();
  const keys = [`${ns}:${qname}`, `${ns}:${qname}:Q`, `${ns}:${qname}:I:${suffix}`, `${ns}:${qname}:parked`];
  // suffix, body, length in UTF-16 code units, default delay, realtime target, marker TTL,
  // then the hand-off to a parked consumer (channel prefix, queue name), as Queues.send_message
  const handoff = cfg.handoff === false ? [] : [`${ns}:wsmq:handoff:`, qname];
  const nkeys = handoff.length ? 4 : 3;
  client.evalsha(sendSha, nkeys, ...keys.slice(0, nkeys), suffix, message, message.length, '', `P${ns}:rt:${qname}`, 60, ...handoff, cb);
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
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

function body() {
  const head = nowMs().toFixed(3) + '|';
  return size > head.length ? head + 'x'.repeat(size - head.length) : head;
}

let sent = 0;
let errors = 0;
let firstError = null;
let next = 0;

function publishOne(cb) {
  const qname = queues[next++ % queues.length];
  const done = (err) => {
    if (err) {
      errors++;
      if (!firstError) firstError = String(err.message || err);
    } else sent++;
    cb();
  };
  if (sendSha) wsmqSend(qname, body(), done);
  else if (rsmq) rsmq.sendMessage({ qname, message: body() }, done);
  else client.publish(qname, body(), done);
}

// Queue backlog (messages waiting in all queues): the flood pauses above `backlogCap` so a
// publisher does not burn the CPU the measured servers need, once they are saturated anyway.
let backlog = 0;
function pollBacklog() {
  if (!rsmq || !backlogCap) return;
  const multi = client.multi();
  for (const q of queues) multi.zcard(`${cfg.ns || 'rsmq'}:${q}`);
  multi.exec((err, counts) => {
    if (!err) backlog = counts.reduce((a, b) => a + b, 0);
  });
}

function flood(durationS, finish) {
  const end = Date.now() + durationS * 1000;
  let inFlight = 0;
  const poller = setInterval(pollBacklog, 20);
  const pump = () => {
    while (inFlight < windowSize && Date.now() < end && !(backlogCap && backlog > backlogCap)) {
      inFlight++;
      publishOne(() => {
        inFlight--;
        setImmediate(pump);
      });
    }
    if (Date.now() >= end) {
      if (inFlight === 0) {
        clearInterval(poller);
        finish();
      }
    } else if (inFlight === 0) setTimeout(pump, 2); // paused on the backlog cap
  };
  pump();
}

function count(total, finish) {
  let issued = 0;
  let inFlight = 0;
  const pump = () => {
    while (inFlight < windowSize && issued < total) {
      issued++;
      inFlight++;
      publishOne(() => {
        inFlight--;
        if (issued === total && inFlight === 0) finish();
        else setImmediate(pump);
      });
    }
  };
  if (total === 0) finish();
  else pump();
}

function rate(perS, durationS, finish) {
  const start = nowMs();
  let issued = 0;
  let inFlight = 0;
  const timer = setInterval(() => {
    const elapsed = (nowMs() - start) / 1000;
    if (elapsed >= durationS) {
      clearInterval(timer);
      const wait = () => (inFlight === 0 ? finish() : setTimeout(wait, 5));
      wait();
      return;
    }
    const target = Math.floor(perS * elapsed);
    while (issued < target) {
      issued++;
      inFlight++;
      publishOne(() => inFlight--);
    }
  }, 2);
}

function ensureQueues(done) {
  if (!rsmq) return done();
  let left = queues.length;
  if (left === 0) return done();
  for (const qname of queues) {
    rsmq.createQueue({ qname }, (err) => {
      if (err && err.name !== 'queueExists') {
        emit({ event: 'error', message: String(err.message || err) });
        process.exit(1);
      }
      if (--left === 0) done();
    });
  }
}

function loadScript(done) {
  if (!sendScript) return done();
  client.script('load', sendScript, (err, sha) => {
    if (err) {
      emit({ event: 'error', message: `SCRIPT LOAD: ${err.message || err}` });
      process.exit(1);
    }
    sendSha = sha;
    done();
  });
}

client.on('ready', () => {
  loadScript(() => ensureQueues(() => {
    emit({ event: 'ready' });
    const started = { t: 0 };
    const finish = () => {
      emit({
        event: 'result', sent, errors, first_error: firstError,
        started: started.t / 1000, elapsed: (nowMs() - started.t) / 1000,
      });
      client.quit(() => process.exit(0));
    };
    const rl = readline.createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      const cmd = line.trim();
      if (cmd === 'go') {
        started.t = nowMs();
        if (cfg.mode === 'flood') flood(cfg.duration, finish);
        else if (cfg.mode === 'count') count(cfg.count, finish);
        else if (cfg.mode === 'rate') rate(cfg.rate, cfg.duration, finish);
        else if (cfg.mode !== 'step') throw new Error(`unknown mode ${cfg.mode}`);
      } else if (cmd === 'send') {
        publishOne(() => emit({ event: 'sent', t: nowMs() / 1000 }));
      } else if (cmd === 'stop') {
        finish();
      }
    });
    rl.on('close', () => process.exit(0));
  }));
});

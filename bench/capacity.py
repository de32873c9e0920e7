"""Capacity scenarios: idle connections per node, the Redis ceiling, the queue layer alone."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import importlib
import importlib.util
import io
import shutil
import time
from typing import Any

import aiohttp

from bench import procs
from bench.delivery import Say, prepare, start_consumers
from bench.profile import Profile, conn_queues
from bench.stats import Metrics
from bench.systems import Running
from wsmq.testing.redisproc import RedisProcess

SETTLE_S = 1.0  # RSS must hold still this long (per-connection set-up finishing: workers, ...)
SETTLE_MAX_S = 8.0


async def settled_rss(pid: int) -> int:
    """RSS (KiB) once it stops moving by more than 1% for ``SETTLE_S``, or after ``SETTLE_MAX_S``.

    Sampling until stable is the measurement itself: there is no event for "done allocating".
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_MAX_S
    last = procs.rss_kib(pid)
    stable_since = loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.25)
        now = procs.rss_kib(pid)
        if abs(now - last) > last * 0.01:
            stable_since = loop.time()
            last = now
        elif loop.time() - stable_since >= SETTLE_S:
            break
    return procs.rss_kib(pid)


async def connections(running: Running, profile: Profile, say: Say) -> Metrics:
    """K authenticated, subscribed, idle connections on one node: handshakes/s and RSS each."""
    queues = conn_queues(profile)
    await prepare(running, queues)
    pid = running.pids[0]
    before = procs.rss_kib(pid)
    consumers, ready = await start_consumers(
        running, queues, "legacy", connect_concurrency=profile.conn_concurrency
    )
    try:
        started = time.monotonic()
        # Legacy clients get no reply to /subscribe: on wsmq, wait until the node reports every
        # subscription set up (its metrics), so RSS is measured with all of them in place.
        subscribed = await wait_subscriptions(running, int(ready["connections"]))
        subscribe_s = time.monotonic() - started if subscribed else None
        after = await settled_rss(pid)
        await consumers.send("stop")
        with contextlib.suppress(procs.ChildError):
            await consumers.event("result", 30)
    finally:
        await consumers.stop()
    k = int(ready["connections"])
    handshakes = k / max(float(ready["connect_s"]), 1e-9)
    per_conn = (after - before) / k if k else None
    say(f"{k} connections: {handshakes:,.0f} handshakes/s, {per_conn:.1f} KiB RSS each")
    out: Metrics = {
        "connections": k,
        "handshakes_per_s": round(handshakes, 1),
        "rss_per_conn_kib": round(per_conn, 2) if per_conn is not None else None,
        "rss_idle_mib": round(before / 1024, 1),
        "rss_loaded_mib": round(after / 1024, 1),
    }
    if subscribe_s is not None:  # all subscriptions in place this long after the last handshake
        out["subscribed_after_s"] = round(subscribe_s, 2)
    return out


async def wait_subscriptions(running: Running, count: int, wait_s: float = 120.0) -> bool:
    """Wait until wsmq's first node counts ``count`` subscriptions (``wsmq_subscriptions``).

    Returns ``False`` at once for systems without that metric (the peers).
    """
    if running.name != "wsmq":
        return False
    url = running.urls[0].replace("ws://", "http://", 1) + "metrics"
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(wait_s):
            while True:
                async with http.get(url) as resp:
                    text = await resp.text()
                for line in text.splitlines():
                    if line.startswith("wsmq_subscriptions ") and float(line.split()[-1]) >= count:
                        return True
                await asyncio.sleep(0.2)


# One RSMQ message life (send, receive with vt, delete) in a single script: the Redis-side work of
# the queue command mix without network round trips, i.e. what one Redis core could sustain.
LIFECYCLE_LUA = """
local q = KEYS[1]
local h = q .. ':Q'
local id = ARGV[1]
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', q, now, id)
redis.call('HSET', h, id, ARGV[2])
redis.call('HINCRBY', h, 'totalsent', 1)
local m = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, 1)
if #m > 0 then
  local mid = m[1]
  redis.call('ZADD', q, now + 30000, mid)
  redis.call('HINCRBY', h, 'totalrecv', 1)
  redis.call('HGET', h, mid)
  redis.call('HINCRBY', h, mid .. ':rc', 1)
  redis.call('HSET', h, mid .. ':fr', now)
  redis.call('ZREM', q, mid)
  redis.call('HDEL', h, mid, mid .. ':rc', mid .. ':fr')
end
return 1
""".strip()

PAYLOAD = "x" * 100

CEILING_TESTS: dict[str, list[str]] = {
    # metric name -> redis-benchmark command (``__rand_int__`` is replaced per request)
    "queue_lifecycle_msgs_per_s": ["EVAL", LIFECYCLE_LUA, "1", "bench:q", "__rand_int__", PAYLOAD],
    "publish_msgs_per_s": ["PUBLISH", "bench:ch", PAYLOAD],
    "zadd_ops_per_s": ["ZADD", "bench:z", "__rand_int__", "m__rand_int__"],
    "hset_ops_per_s": ["HSET", "bench:h", "f__rand_int__", PAYLOAD],
}


def parse_benchmark_csv(text: str) -> float | None:
    """Requests per second from ``redis-benchmark --csv`` output (first data row)."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    for row in rows:
        if row[0] != "test" and len(row) > 1:
            try:
                return float(row[1])
            except ValueError:
                continue
    return None


async def redis_ceiling(profile: Profile, say: Say) -> Metrics:
    """``redis-benchmark`` on a private Redis like the systems': the ceiling every system shares."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {"skipped": "redis-benchmark not installed"}
    redis = RedisProcess()
    await asyncio.to_thread(redis.start)
    out: Metrics = {}
    try:
        for metric, command in CEILING_TESTS.items():
            proc = await asyncio.create_subprocess_exec(
                binary, "-h", redis.host, "-p", str(redis.port), "-c", "50", "-P", "16",
                "-n", str(profile.ceiling_requests), "-r", "1000000", "--csv", *command,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(120):
                stdout, _ = await proc.communicate()
            rate = parse_benchmark_csv(stdout.decode())
            out[metric] = round(rate, 1) if rate is not None else None
            say(f"{metric}: {rate:,.0f}/s" if rate else f"{metric}: no result")
    finally:
        await asyncio.to_thread(redis.cleanup)
    return out


async def queue_layer(profile: Profile, say: Say) -> dict[str, Any]:
    """``bench/queue_throughput.py`` (queue-layer send/receive/delete msg/s), when it exists.

    Its rows become ``scenarios.queue.<tool>.<op>_c<concurrency>[_p<pipeline>]_per_s`` with
    ``tool`` = ``wsmq`` (the Python queue API) or ``redis-benchmark`` (plain commands).
    """
    if importlib.util.find_spec("bench.queue_throughput") is None:
        return {"wsmq": {"skipped": "bench/queue_throughput.py not present"}}
    module = importlib.import_module("bench.queue_throughput")
    measure = getattr(module, "measure", None)
    if measure is None:
        return {"wsmq": {"skipped": "bench.queue_throughput has no measure()"}}
    quick = profile.name == "quick"
    kwargs: dict[str, Any] = (
        {"messages": 1000, "tasks": (1, 4), "batches": (1, 100), "redis_benchmark": False}
        if quick
        else {}
    )
    # measure() runs its own event loop (asyncio.run): give it a thread of its own.
    result = await asyncio.to_thread(measure, **kwargs)
    out: dict[str, dict[str, Any]] = {}
    for row in result.get("rows", []):
        name = f"{row['op'].replace(' ', '_')}_c{row['concurrency']}"
        if int(row.get("pipeline", 1)) != 1:
            name += f"_p{row['pipeline']}"
        out.setdefault(str(row["tool"]), {})[f"{name}_per_s"] = row["per_s"]
    for tool, metrics in out.items():
        best = max((v for v in metrics.values() if isinstance(v, int | float)), default=0)
        say(f"{tool}: {len(metrics)} measurements, best {best:,.0f}/s")
    return out or {"wsmq": {"skipped": "bench.queue_throughput returned no rows"}}

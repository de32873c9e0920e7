"""Delivery scenarios: throughput at saturation, latency (fixed rate and idle), backlog drain.

Each function drives one running system (its nodes on a private Redis, see ``bench.systems``)
with publisher and client processes and returns flat metrics
(``scenarios.<name>.<system>.<metric>``).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from bench import fill, procs
from bench.profile import DRAIN_QUEUES, IDLE_QUEUES, Profile, lat_queues, tp_queues
from bench.stats import Metrics, latency_summary, window_rate
from bench.systems import Running

Say = Callable[[str], None]
PUBLISHER_RATE = 2500  # msg/s one Node rsmq publisher reliably offers on this kind of machine


async def reset_redis(running: Running) -> None:
    """Empty the system's Redis, so one variant's backlog cannot leak into the next."""
    client = aioredis.Redis.from_url(running.redis.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def wait_pubsub_subscribed(running: Running, channels: list[str], wait_s: float) -> None:
    """Pub/sub loses what is published before SUBSCRIBE: wait until every channel has a listener."""
    client = aioredis.Redis.from_url(running.redis.url)
    try:
        async with asyncio.timeout(wait_s):
            while True:
                counts = dict(await client.pubsub_numsub(*channels))
                if all(int(counts.get(c.encode(), 0)) > 0 for c in channels):
                    return
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()


def clients_for(running: Running, queues: list[str]) -> list[dict[str, str]]:
    return [{"url": running.urls[i % len(running.urls)], "queue": q} for i, q in enumerate(queues)]


async def start_consumers(
    running: Running, queues: list[str], protocol: str, **extra: Any
) -> tuple[procs.Child, dict[str, Any]]:
    """Start a client process, wait until every socket is connected and subscribed."""
    config = {
        "clients": clients_for(running, queues),
        "protocol": protocol,
        "headers": running.headers,
        **extra,
    }
    child = await procs.loadgen(f"{running.name} clients", config)
    try:
        ready = await child.event("ready", 60)
        if running.kind == "pubsub":
            await wait_pubsub_subscribed(running, queues, 10)
    except BaseException:
        await child.stop()
        raise
    return child, ready


async def start_publishers(
    running: Running, processes: int, queues: list[str], **config: Any
) -> list[procs.Child]:
    """Start ``processes`` Node publishers (they create missing queues), wait until ready."""
    pubs: list[procs.Child] = []
    try:
        for i in range(processes):
            cfg = {"redis": running.redis.url, "kind": running.kind, "queues": queues, **config}
            if running.send_script is not None:
                cfg["send_script"] = running.send_script
            pubs.append(await procs.publisher(f"publisher[{i}]", cfg))
        for pub in pubs:
            await pub.event("ready", 30)
    except BaseException:
        await asyncio.gather(*(p.stop() for p in pubs), return_exceptions=True)
        raise
    return pubs


async def prepare(running: Running, queues: list[str]) -> None:
    """Empty Redis (so one variant's backlog cannot leak into the next) and create the queues."""
    await reset_redis(running)
    if running.kind == "rsmq":
        await fill.create_queues(running.redis.url, queues)


async def start_both(
    running: Running, queues: list[str], protocol: str, client_extra: dict[str, Any] | None = None,
    *, publishers: int = 1, **publisher_config: Any,
) -> tuple[list[procs.Child], procs.Child]:  # fmt: skip
    """Start publishers and clients side by side (process start-up dominates short runs)."""
    pub_task = asyncio.ensure_future(
        start_publishers(running, publishers, queues, **publisher_config)
    )
    con_task = asyncio.ensure_future(
        start_consumers(running, queues, protocol, **(client_extra or {}))
    )
    done = await asyncio.gather(pub_task, con_task, return_exceptions=True)
    failed = [d for d in done if isinstance(d, BaseException)]
    if failed:
        if not isinstance(done[0], BaseException):
            await stop_all(done[0])
        if not isinstance(done[1], BaseException):
            await done[1][0].stop()
        raise failed[0]
    pubs, (consumers, _) = done
    return pubs, consumers


async def stop_all(children: list[procs.Child]) -> None:
    await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)


# --- throughput -------------------------------------------------------------------------------


async def throughput(running: Running, profile: Profile, say: Say) -> Metrics:
    queues = tp_queues(profile)
    out: Metrics = {}
    for protocol, size in profile.tp_variants:
        if protocol not in running.protocols:
            continue
        key = f"{protocol}_{size}B"
        await prepare(running, queues)
        if running.kind == "rsmq":
            # Start saturated: a backlog is waiting, so the rate measured is the system's,
            # not the (slower) publishers'; they keep publishing during the measurement.
            prefill = min(profile.tp_prefill, profile.tp_prefill_bytes // size)
            await fill.fill_queues(running.redis.url, queues, prefill, size)
        pubs, consumers = await start_both(
            running, queues, protocol, publishers=profile.tp_publishers, size=size,
            mode="flood", duration=profile.tp_duration, window=64,
            backlog_cap=profile.tp_backlog_cap,
        )  # fmt: skip
        children = [*pubs, consumers]
        roles = {
            "nodes": running.pids,
            "redis": [running.redis.pid or 0],
            "publishers": [p.pid for p in pubs],
            "clients": [consumers.pid],
        }
        go = time.time()
        # the window is the measurement: it lasts `tp_duration` even if publishers end early
        cpu_task = asyncio.ensure_future(
            window_cpu(roles, go + profile.tp_warmup, go + profile.tp_duration)
        )
        try:
            for pub in pubs:
                await pub.send("go")
            results = [await p.event("result", profile.tp_duration + 30) for p in pubs]
            cpu_used = await cpu_task
            await consumers.send("stop")
            got = await consumers.event("result", 30)
            left = await fill.backlog(running.redis.url, queues) if running.kind == "rsmq" else None
        finally:
            cpu_task.cancel()
            await stop_all(children)
        rate = window_rate([got["series"]], go + profile.tp_warmup, go + profile.tp_duration)
        sent = sum(int(r["sent"]) for r in results)
        out[f"{key}_msgs_per_s"] = round(rate, 1)
        out[f"{key}_published_per_s"] = round(sent / profile.tp_duration, 1)
        if left is not None:  # 0 means the backlog ran dry: publisher-bound, not saturated
            out[f"{key}_backlog_end"] = left
        errors = [str(r["first_error"]) for r in results if r.get("first_error")]
        if errors or got["errors"]:
            out[f"{key}_errors"] = "; ".join(errors + got["errors"])[:200]
        window = profile.tp_duration - profile.tp_warmup
        for role, seconds in cpu_used.items():
            out[f"{key}_cpu_{role}_pct"] = round(100 * seconds / window, 1)
        if rate > 0:  # what one delivered message costs the nodes, whatever share they got
            out[f"{key}_node_cpu_us_per_msg"] = round(1e6 * cpu_used["nodes"] / (rate * window), 1)
        published = sent / profile.tp_duration
        cpu = " ".join(f"{r} {100 * s / window:.0f}%" for r, s in cpu_used.items())
        say(f"{key}: {rate:,.0f} msg/s delivered ({published:,.0f} published/s; CPU {cpu})")
    return out


async def window_cpu(roles: dict[str, list[int]], start: float, end: float) -> dict[str, float]:
    """CPU seconds each role's processes used between the wall-clock times ``start`` and ``end``."""
    await asyncio.sleep(max(0.0, start - time.time()))
    before = procs.cpu_snapshot(roles)
    await asyncio.sleep(max(0.0, end - time.time()))
    after = procs.cpu_snapshot(roles)
    return {role: max(0.0, after[role] - before[role]) for role in roles}


# --- latency ----------------------------------------------------------------------------------


async def latency(running: Running, profile: Profile, say: Say) -> Metrics:
    queues = lat_queues(profile)
    out: Metrics = {}
    for rate in profile.lat_rates:
        await prepare(running, queues)
        # One rsmq publisher process manages ~2-4k sends/s here: split higher rates.
        n_pubs = max(1, math.ceil(rate / PUBLISHER_RATE))
        pubs, consumers = await start_both(
            running, queues, "legacy", {"latency": True}, publishers=n_pubs, size=100,
            mode="rate", rate=rate / n_pubs, duration=profile.lat_duration,
        )  # fmt: skip
        children = [*pubs, consumers]
        try:
            for pub in pubs:
                await pub.send("go")
            results = [await p.event("result", profile.lat_duration + 30) for p in pubs]
            sent = sum(int(r["sent"]) for r in results)
            await consumers.send(f"expect {sent} {profile.lat_grace}")
            got = await consumers.event("result", profile.lat_grace + 30)
        finally:
            await stop_all(children)
        summary = latency_summary(got["latencies"], prefix=f"{rate}_")
        out.update(summary)
        elapsed = max(max(float(r["elapsed"]) for r in results), 1e-9)
        out[f"{rate}_offered_per_s"] = round(sent / elapsed, 1)
        out[f"{rate}_delivered"] = round(int(got["count"]) / sent, 4) if sent else None
        p50, p99 = summary[f"{rate}_p50_ms"], summary[f"{rate}_p99_ms"]
        say(f"{rate}/s: p50 {p50} ms, p99 {p99} ms, delivered {got['count']}/{sent}")
    out.update(await _idle_latency(running, profile, say))
    return out


async def _idle_latency(running: Running, profile: Profile, say: Say) -> Metrics:
    """One message at a time on an idle queue: what a chat user waits for each message."""
    queues = IDLE_QUEUES
    await prepare(running, queues)
    pubs, consumers = await start_both(
        running, queues, "legacy", {"emit_each": True}, size=100, mode="step"
    )
    children = [*pubs, consumers]
    samples: list[float] = []
    lost = 0
    got: dict[str, Any] = {"errors": []}
    try:
        deadline = time.monotonic() + profile.idle_budget
        rng = random.Random(7)
        while len(samples) < profile.idle_samples and time.monotonic() < deadline:
            await asyncio.sleep(rng.uniform(*profile.idle_gap))  # the idle gap is the measurement
            await pubs[0].send("send")
            # rsmq-worker backs off to a 10 s poll: allow that, plus slack
            try:
                event = await consumers.event("msg", 12.0)
            except procs.ChildError:
                lost += 1
                break
            samples.append(float(event["latency_ms"]))
        await consumers.send("stop")
        got = await consumers.event("result", 10)
    finally:
        await stop_all(children)
    summary = latency_summary(samples, prefix="idle_")
    if got["errors"]:
        summary["idle_errors"] = "; ".join(got["errors"])[:200]
    summary["idle_mean_ms"] = round(sum(samples) / len(samples), 3) if samples else None
    summary["idle_timeouts"] = lost
    p50, top = summary["idle_p50_ms"], summary["idle_max_ms"]
    say(f"idle: p50 {p50} ms, max {top} ms ({len(samples)} msgs)")
    return summary


# --- backlog drain ----------------------------------------------------------------------------


async def drain(running: Running, profile: Profile, say: Say) -> Metrics:
    queues = DRAIN_QUEUES
    out: Metrics = {}
    for protocol in profile.drain_protocols:
        if protocol not in running.protocols:
            continue
        await prepare(running, queues)
        n = profile.drain_count
        if running.kind == "rsmq":
            await fill.fill_queues(running.redis.url, queues, n, 100)
        else:
            await fill.publish_many(running.redis.url, queues, n, 100)
        # pub/sub keeps nothing for an offline client: wait briefly, expect nothing.
        timeout = profile.drain_timeout if running.kind == "rsmq" else profile.drain_empty_wait
        consumers, _ = await start_consumers(running, queues, protocol, expect=n, timeout=timeout)
        try:
            got = await consumers.event("result", timeout + 30)
        finally:
            await consumers.stop()
        count = int(got["count"])
        elapsed = float(got["last_t"]) - float(got["subscribed_t"])
        rate = count / elapsed if count and elapsed > 0 else 0.0
        out[f"{protocol}_msgs_per_s"] = round(rate, 1) if count else None
        out[f"{protocol}_delivered"] = round(count / n, 4)
        say(f"{protocol}: {count}/{n} delivered" + (f" at {rate:,.0f} msg/s" if count else ""))
    return out

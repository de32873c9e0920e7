"""Fan-out: one message to N recipients, by wsmq (devices, groups) or by the publisher itself.

One publisher, one wsmq node (``bench.hotpath``'s: a child process, auth off) on a private
redis-server, and N WebSocket subscribers in one load-generator process (``bench.loadgen``,
``wsmq.v1``, every message acked). Cases:

- ``devN``: one queue with N **devices** (``/subscribe/<q> device=d<i>``): the queue's consumers
  copy each message into the N inboxes (``fanout.lua``), each device acks its copy;
- ``groupN``: a **group** of N member queues, one subscriber per member: the node's group
  copier copies each message into the members;
- the baseline (column ``publisher``): N plain queues, one subscriber each, and the publisher
  sends every message N times itself, as a smart publisher would: all the sends due at a tick
  in one pipeline of wsmq's send script (store + notify, one ``EVALSHA`` per copy).

The wsmq cases publish one send per message (the same pipelined send script), so the two
columns differ only in who makes the copies. For each case:

1. a **fixed offered rate** (``fo_rate_copies`` copies/s, i.e. ``fo_rate_copies / N``
   messages/s) for ``fo_duration`` s after a ``fo_warmup``: copies delivered per second in the
   window, the fraction delivered, publish→deliver latency (the body carries the send time),
   and the CPU each part used per delivered copy: Redis (``INFO cpu``: ``used_cpu_sys`` +
   ``used_cpu_user`` of the private redis-server, before/after), the node and the publisher;
2. a **flood**: ``fo_flood_copies / N`` messages published back to back (pipelines of up to
   100 messages' sends), then the copies delivered per second until the last arrived.

``python -m bench --scenarios fanout`` (part of a full run) or ``python -m bench.fanout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `wsmq` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Child, cpu_seconds, python_child_argv
from bench.stats import Metrics, percentile, window_rate

Say = Callable[[str], None]
BODY_SIZE = 100
#: Columns of the result: wsmq's fan-out, and the publisher making the copies itself.
SUBJECT, BASELINE = "wsmq", "publisher"


@dataclass(frozen=True)
class Sizes:
    """What one fan-out run does (from the bench profile, or the command line)."""

    devices: tuple[int, ...] = (10, 100)
    group_members: int = 100
    rate_copies: int = 5000
    duration: float = 5.0
    warmup: float = 1.0
    grace: float = 3.0
    flood_copies: int = 20_000


@dataclass(frozen=True)
class Case:
    name: str  # metric prefix: dev10, group100
    kind: str  # "devices", "group", "baseline"
    recipients: int


def cases(sizes: Sizes) -> list[Case]:
    out = [Case(f"dev{n}", "devices", n) for n in sizes.devices]
    if sizes.group_members:
        out.append(Case(f"group{sizes.group_members}", "group", sizes.group_members))
    return out


def stamp(size: int = BODY_SIZE) -> str:
    head = f"{time.time() * 1000.0:.3f}|"
    return head + "x" * max(0, size - len(head))


class Publisher:
    """Sends each message to every target queue: one pipeline of send scripts per call."""

    def __init__(self, queues: Any, targets: Sequence[str]) -> None:
        from wsmq.queue.scripts import SCRIPTS

        self.queues = queues
        self.sha = SCRIPTS["send"].sha
        self.source = SCRIPTS["send"].source
        keys = queues.keys
        self.targets = [
            (keys.messages(q), keys.attributes(q), q, queues.publish_target(q)) for q in targets
        ]
        self.messages = 0

    async def load(self) -> None:
        await self.queues.redis.script_load(self.source)

    async def publish(self, count: int) -> None:
        from wsmq.queue.ids import random_suffix

        keys = self.queues.keys
        async with self.queues.redis.pipeline(transaction=False) as pipe:
            for _ in range(count):
                body = stamp()
                for messages, attributes, qname, channel in self.targets:
                    suffix = random_suffix()
                    marker = self.queues.keys.send_marker(qname, suffix)
                    # as Queues.send_message, hand-off to a parked consumer included
                    pipe.evalsha(
                        self.sha, 4, messages, attributes, marker, keys.parked(qname),
                        suffix, body, len(body), "", channel, 60, keys.handoff_prefix, qname,
                    )  # fmt: skip
            await pipe.execute()
        self.messages += count

    async def at_rate(self, rate: float, duration: float) -> None:
        """``rate`` messages/s for ``duration`` s: every tick sends what is due by then."""
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        total = max(1, round(rate * duration))
        while sent < total:
            due = min(total, int((loop.time() - start) * rate) + 1) - sent
            if due > 0:
                await self.publish(due)
                sent += due
            wait = start + sent / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the offered rate's pacing: part of what is measured


async def start_loadgen(name: str, config: dict[str, Any]) -> Child:
    """``bench.loadgen`` (Python: the Node one has no device subscriptions) with ``config``."""
    with tempfile.NamedTemporaryFile("w", prefix="wsmq-fanout-", suffix=".json", delete=False) as f:
        json.dump(config, f)
    return await Child.start(name, python_child_argv("bench.loadgen", "@" + f.name))


async def redis_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def setup(queues: Any, case: Case, baseline: bool) -> tuple[list[str], list[dict[str, str]]]:
    """Create the case's queues; returns (publish targets, load-generator clients w/o url)."""
    n = case.recipients
    prefix = f"fo{case.name}{'b' if baseline else ''}"
    if baseline:
        names = [f"{prefix}q{i}" for i in range(n)]
        for q in names:
            await queues.create_queue(q)
        return names, [{"queue": q} for q in names]
    if case.kind == "devices":
        qname = f"{prefix}q"
        await queues.create_queue(qname)
        return [qname], [{"queue": qname, "device": f"d{i}"} for i in range(n)]
    members = [f"{prefix}m{i}" for i in range(n)]
    for q in members:
        await queues.create_queue(q)
    group = f"{prefix}g"
    await queues.groups.add(group, *members)
    return [group], [{"queue": q} for q in members]


async def run_case(
    case: Case, baseline: bool, sizes: Sizes, url: str, redis_url: str, node_pid: int
) -> Metrics:
    from wsmq.queue import Queues

    n = case.recipients
    queues = Queues.from_url(redis_url, realtime=True)
    loadgen: Child | None = None
    try:
        targets, clients = await setup(queues, case, baseline)
        publisher = Publisher(queues, targets)
        await publisher.load()
        config = {
            "clients": [{"url": url, **c} for c in clients],
            "protocol": "v1",
            "latency": True,
            "connect_concurrency": 50,
        }
        loadgen = await start_loadgen(f"loadgen {case.name}", config)
        await loadgen.event("ready", 60)
        rate = sizes.rate_copies / n  # messages per second
        await publisher.at_rate(rate, sizes.warmup)
        since = time.time() * 1000.0
        await loadgen.send(f"since {since:.3f}")
        await loadgen.event("since", 10)
        redis0, node0 = await redis_cpu(queues.redis), cpu_seconds(node_pid)
        clients0 = cpu_seconds(loadgen.pid)
        pub0, load0, t0 = time.process_time(), os.getloadavg()[0], time.time()
        before = publisher.messages
        await publisher.at_rate(rate, sizes.duration)
        t1 = time.time()
        pub_cpu = time.process_time() - pub0
        clients_used = cpu_seconds(loadgen.pid) - clients0
        offered = (publisher.messages - before) * n
        await loadgen.send(f"expect {offered} {sizes.grace}")
        result = await loadgen.event("result", sizes.grace + 30)
        redis_used = await redis_cpu(queues.redis) - redis0
        node_used = cpu_seconds(node_pid) - node0
        got = int(result["count"])
        lat: list[float] = result["latencies"]
        p = case.name
        out: Metrics = {
            f"{p}_offered_per_s": round(offered / (t1 - t0), 1),
            f"{p}_copies_per_s": round(window_rate([result["series"]], t0, t1), 1),
            f"{p}_delivered": round(got / offered, 4) if offered else None,
            f"{p}_p50_ms": _ms(percentile(lat, 0.5)),
            f"{p}_p99_ms": _ms(percentile(lat, 0.99)),
            f"{p}_samples": len(lat),
            f"{p}_redis_cpu_us_per_copy": round(redis_used / got * 1e6, 2) if got else None,
            f"{p}_node_cpu_us_per_copy": round(node_used / got * 1e6, 2) if got else None,
            f"{p}_publisher_cpu_us_per_copy": round(pub_cpu / got * 1e6, 2) if got else None,
            # The subscribers' process, as a share of one core over the publishing window:
            # near 100 the clients, not the system, set the latency.
            f"{p}_clients_cpu_pct": round(clients_used / (t1 - t0) * 100, 1),
            f"{p}_load1": round(load0, 2),
        }
        if result.get("errors"):
            raise RuntimeError(f"{case.name}: error frames: {result['errors']}")
        await loadgen.stop()
        loadgen = None
        out[f"{p}_max_copies_per_s"] = await flood(case, sizes, url, publisher, clients)
        return out
    finally:
        if loadgen is not None:
            await loadgen.stop()
        await queues.close()


async def flood(
    case: Case, sizes: Sizes, url: str, publisher: Publisher, clients: list[dict[str, str]]
) -> float | None:
    """Copies/s delivered when ``flood_copies / N`` messages are published back to back."""
    messages = max(1, sizes.flood_copies // case.recipients)
    expect = messages * case.recipients
    config = {
        "clients": [{"url": url, **c} for c in clients],
        "protocol": "v1",
        "expect": expect,
        "timeout": 120,
        "connect_concurrency": 50,
        # Copies left unacked by the rate run's sockets come again: not part of the flood.
        "since": time.time() * 1000.0,
    }
    child = await start_loadgen(f"flood {case.name}", config)
    try:
        await child.event("ready", 60)
        start = time.time()
        sent = 0
        while sent < messages:
            batch = min(100, messages - sent)
            await publisher.publish(batch)
            sent += batch
        result = await child.event("result", 130)
    finally:
        await child.stop()
    got, last = int(result["count"]), float(result["last_t"])
    if got < expect or last <= start:
        return None  # did not finish within the timeout: no rate to report
    return round(got / (last - start), 1)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def measure(sizes: Sizes, say: Say = print) -> dict[str, Metrics]:
    """Every case on one node and one private Redis; ``{"wsmq": ..., "publisher": ...}``."""
    from bench.hotpath import RealServer
    from wsmq.testing.redisproc import RedisProcess

    redis = RedisProcess().start()
    server_args = argparse.Namespace(
        window=200, batch=100, uvloop=False, profile=False, server_ack_concurrency=0
    )
    server: RealServer | None = None
    columns: dict[str, Metrics] = {SUBJECT: {}, BASELINE: {}}
    done_baselines: dict[int, Metrics] = {}
    try:
        server = await asyncio.to_thread(RealServer, redis.url, server_args)
        url = f"ws://127.0.0.1:{server.port}/"
        for case in cases(sizes):
            for baseline in (False, True):
                column = BASELINE if baseline else SUBJECT
                if baseline and case.recipients in done_baselines:
                    # The same N plain queues as for another case: measured once.
                    measured = done_baselines[case.recipients]
                    columns[column].update(_renamed(measured, case.name))
                    continue
                metrics = await run_case(case, baseline, sizes, url, redis.url, server.proc.pid)
                if baseline:
                    done_baselines[case.recipients] = metrics
                columns[column].update(metrics)
                p = case.name
                say(
                    f"{p:9} {column:9} {metrics[f'{p}_copies_per_s'] or 0:8,.0f} copies/s "
                    f"(offered {metrics[f'{p}_offered_per_s'] or 0:,.0f}, delivered "
                    f"{metrics[f'{p}_delivered']}) p50 {metrics[f'{p}_p50_ms']} ms "
                    f"p99 {metrics[f'{p}_p99_ms']} ms, redis "
                    f"{metrics[f'{p}_redis_cpu_us_per_copy']} µs/copy, flood "
                    f"{metrics[f'{p}_max_copies_per_s'] or 0:,.0f} copies/s, "
                    f"load {metrics[f'{p}_load1']}"
                )
    finally:
        if server is not None:
            server.close()
        redis.stop()
    return columns


def _renamed(metrics: Metrics, prefix: str) -> Metrics:
    """``metrics`` of one case under another case's prefix (``dev100_x`` → ``group100_x``)."""
    return {f"{prefix}_{k.split('_', 1)[1]}": v for k, v in metrics.items()}


def sizes_of(profile: Any) -> Sizes:
    return Sizes(
        devices=tuple(profile.fo_devices),
        group_members=profile.fo_group_members,
        rate_copies=profile.fo_rate_copies,
        duration=profile.fo_duration,
        warmup=profile.fo_warmup,
        grace=profile.fo_grace,
        flood_copies=profile.fo_flood_copies,
    )


async def scenario(profile: Any, say: Say) -> dict[str, Any]:
    """``python -m bench --scenarios fanout``: columns ``wsmq`` and ``publisher``."""
    return dict(await measure(sizes_of(profile), say))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Sizes()
    ap.add_argument("--devices", default=",".join(map(str, d.devices)), help="device counts")
    ap.add_argument("--members", type=int, default=d.group_members, help="group members (0: no)")
    ap.add_argument("--rate", type=int, default=d.rate_copies, help="offered copies/s")
    ap.add_argument("--duration", type=float, default=d.duration)
    ap.add_argument("--flood", type=int, default=d.flood_copies, help="copies in the flood")
    args = ap.parse_args(argv)
    sizes = Sizes(
        devices=tuple(int(x) for x in args.devices.split(",") if x),
        group_members=args.members,
        rate_copies=args.rate,
        duration=args.duration,
        flood_copies=args.flood,
    )
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(measure(sizes))
        for column, metrics in result.items():
            print(column, metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

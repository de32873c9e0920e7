"""The ``scale`` scenario: 100k authenticated, subscribed, idle ``wsmq.v1`` sockets on one node.

``python -m bench.scale --connections 100000 --nodes 2`` (or ``scripts/bench --scale``,
``python -m bench --scenarios scale``). Steps, on a private redis-server:

1. ``--nodes`` ``wsmq serve`` nodes; ``--users`` users, each owning ``queues / users`` of the
   ``--queues`` queues (real HS256 x-tokens and access tokens, ``--max-connections-per-user 0``);
2. the node's RSS before any socket (``VmRSS`` of the node process alone);
3. ``--client-procs`` lean client processes (:mod:`bench.scale_client`) open ``--connections``
   sockets to the first node, socket ``i`` subscribed to queue ``i % queues`` (many idle sockets
   per queue: competing consumers), from source addresses ``127.0.0.2 ...`` (``--source-ips``);
4. the node's RSS once it holds still, and its CPU (utime + stime) over ``--idle`` seconds with
   every socket idle (heartbeat pings included); the client processes' RSS and CPU apart;
5. the reconnect storm: the first node gets SIGTERM (graceful shutdown) and is started again;
   every socket that closes reconnects to a random node (the other one while it is down), with
   ``--storm-messages`` published meanwhile (``Queues.send_message``, spread over the queues);
   reported: seconds from SIGTERM until every socket is subscribed again, and how many of the
   published messages arrived (unique ids, acked) within ``--deliver-timeout``.

Limits: the process raises its open-file limit (as root also the hard limit, which the nodes and
clients inherit; each raises its soft limit to it). It changes no sysctl: with
``IP_BIND_ADDRESS_NO_PORT`` each (source address, node) pair has the whole ephemeral port range.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import aiohttp

from bench import procs
from bench.capacity import settled_rss
from bench.fill import create_queues
from bench.profile import Profile
from bench.scale_config import ScaleConfig, ScaleLimitError, raise_fd_limits
from bench.stats import Metrics
from bench.systems import System
from wsmq.auth import FileUserStore
from wsmq.queue import Queues
from wsmq.testing.nodes import DemoRedis, NodeProcess, wsmq_command
from wsmq.testing.redisproc import RedisProcess, free_port
from wsmq.testing.users import CHEAP_HASHER, make_users

Say = Any  # a callable taking one progress line (bench.run.Progress)
STOP_GRACE_S = 30.0  # SIGTERM to SIGKILL of the restarted node


def queue_names(cfg: ScaleConfig) -> list[str]:
    return [f"scale{i}" for i in range(cfg.queues)]


async def make_scale_users(path: Path, cfg: ScaleConfig, secret: str) -> list[dict[str, str]]:
    """User ``u`` may subscribe to queues ``q`` with ``q % users == u``; their handshake headers."""
    names = queue_names(cfg)
    store = FileUserStore(path, hasher=CHEAP_HASHER)
    headers: list[dict[str, str]] = []
    try:
        for u in range(cfg.users):
            (user,) = await make_users(
                store, names=[f"scale-user{u}"], queues=names[u :: cfg.users], secret=secret,
                ttl=7200,
            )  # fmt: skip
            headers.append(user.headers)
    finally:
        await store.close()
    return headers


async def start_nodes(
    redis: RedisProcess, cfg: ScaleConfig, users: Path, secret: str
) -> tuple[list[NodeProcess], Path]:
    extra = shlex.split(os.environ.get("WSMQ_BENCH_SERVE_ARGS", ""))  # as bench.systems.Wsmq
    argvs = [
        [*wsmq_command(), "serve", "--host", "127.0.0.1", "--port", str(free_port()),
         "--redis-url", redis.url, "--users-file", str(users), "--secret", secret,
         "--max-connections-per-user", "0", *extra]
        for _ in range(cfg.nodes)
    ]  # fmt: skip
    return await System._spawn_nodes("wsmq", argvs)


async def start_clients(
    cfg: ScaleConfig, processes: int, nodes: list[NodeProcess], users: list[dict[str, str]]
) -> list[procs.Child]:
    per = math.ceil(cfg.connections / processes)
    children: list[procs.Child] = []
    try:
        for p in range(processes):
            first = p * per
            count = min(per, cfg.connections - first)
            if count <= 0:
                break
            config = {
                "first": first,
                "count": count,
                "nodes": [["127.0.0.1", n.port] for n in nodes],
                "initial_nodes": cfg.initial_nodes,
                "queues": queue_names(cfg),
                "users": users,
                "source_ips": cfg.ips,
                "concurrency": cfg.concurrency,
            }
            with tempfile.NamedTemporaryFile(
                "w", prefix="wsmq-scale-", suffix=".json", delete=False
            ) as f:
                json.dump(config, f)
            argv = procs.python_child_argv("bench.scale_client", "@" + f.name)
            children.append(await procs.Child.start(f"scale clients {p}", argv))
    except BaseException:
        await asyncio.gather(*(c.stop() for c in children))
        raise
    return children


async def node_metric(node: NodeProcess, name: str) -> float | None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.http_url}/metrics") as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def publish(redis_url: str, queues: list[str], count: int, rate: float) -> list[str]:
    """``count`` messages at ``rate``/s, round robin over ``queues``; their ids."""
    ids: list[str] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Queues.from_url(redis_url, realtime=True) as q:
        for i in range(count):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the offered rate is what is measured
            ids.append(await q.send_message(queues[i % len(queues)], f"storm {i}"))
    return ids


async def received_ids(clients: list[procs.Child]) -> int:
    for c in clients:
        await c.send("count")
    counts = await asyncio.gather(*(c.event("count", 30) for c in clients))
    return sum(int(c["received"]) for c in counts)


async def scale(cfg: ScaleConfig, say: Say, *, keep_logs: bool = False) -> Metrics:
    """The whole scenario (see the module docstring); flat metrics for the report.

    ``keep_logs`` leaves the nodes' logs (``wsmq-<i>.log``) in place and names their directory.
    """
    cfg.check()
    limits = raise_fd_limits(cfg)
    processes = cfg.procs_for(limits["fd_limit"])
    out: Metrics = {
        "connections_wanted": cfg.connections, "nodes": cfg.nodes,
        "initial_nodes": cfg.initial_nodes, "queues": cfg.queues, "users": cfg.users,
        "client_procs": processes, "source_ips": len(cfg.ips), **limits,
    }  # fmt: skip
    say(f"open-file limit {limits['fd_limit']:,}; {processes} client processes; source "
        f"addresses {cfg.ips[0]}..{cfg.ips[-1]}")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="wsmq-scale-"))
    redis = DemoRedis()  # dies with this process, like the nodes
    await asyncio.to_thread(redis.start)
    nodes: list[NodeProcess] = []
    clients: list[procs.Child] = []
    logs: Path | None = None
    try:
        secret = random.randbytes(32).hex()
        users = await make_scale_users(tmp / "users.json", cfg, secret)
        await create_queues(redis.url, queue_names(cfg))
        nodes, logs = await start_nodes(redis, cfg, tmp / "users.json", secret)
        loaded = [n.pid for n in nodes[: cfg.initial_nodes]]
        rss_before = sum(await asyncio.gather(*(settled_rss(pid) for pid in loaded)))
        say(f"{cfg.nodes} nodes up; RSS of the {len(loaded)} loaded node(s) "
            f"{rss_before / 1024:.1f} MiB before any socket")  # fmt: skip
        started = time.monotonic()
        cpu_start = procs.cpu_snapshot({"nodes": loaded})
        clients = await start_clients(cfg, processes, nodes, users)
        ready = await asyncio.gather(
            *(c.event("ready", cfg.storm_timeout + cfg.connections / 100) for c in clients)
        )
        connect_s = time.monotonic() - started
        connect_cpu = procs.cpu_snapshot({"nodes": loaded})["nodes"] - cpu_start["nodes"]
        client_pids = [c.pid for c in clients]
        clients_cpu = procs.cpu_snapshot({"clients": client_pids})["clients"]
        held = sum(int(r["connections"]) for r in ready)
        attempts = sum(int(r["attempts"]) for r in ready)
        connect_failures = failure_summary(r["refusals"] for r in ready)
        counted = [await node_metric(n, "wsmq_connections") for n in nodes[: cfg.initial_nodes]]
        say(f"{held:,} sockets subscribed in {connect_s:.1f}s ({held / connect_s:,.0f}/s; nodes "
            f"CPU {100 * connect_cpu / connect_s:.0f}%, {1e6 * connect_cpu / held:.0f} µs each, "
            f"clients {100 * clients_cpu / connect_s:.0f}%); nodes count {counted}; "
            f"{attempts - held} failed attempts: {connect_failures or '-'}")  # fmt: skip
        rss_loaded = sum(await asyncio.gather(*(settled_rss(pid) for pid in loaded)))
        cpu0 = procs.cpu_snapshot({"nodes": loaded, "clients": client_pids})
        t0 = time.monotonic()
        await asyncio.sleep(cfg.idle)  # the idle window is the measurement
        window = time.monotonic() - t0
        cpu1 = procs.cpu_snapshot({"nodes": loaded, "clients": client_pids})
        per_conn = (rss_loaded - rss_before) / held
        out.update(
            connections=held,
            node0_connections_metric=counted[0],
            connect_s=round(connect_s, 1),
            connect_attempts=attempts,
            connect_failures=connect_failures,
            handshakes_per_s=round(held / connect_s, 1),
            connect_nodes_cpu_pct=round(100 * connect_cpu / connect_s, 1),
            connect_node_cpu_us_per_conn=round(1e6 * connect_cpu / held, 1),
            connect_clients_cpu_pct=round(100 * clients_cpu / connect_s, 1),
            rss_before_mib=round(rss_before / 1024, 1),
            rss_loaded_mib=round(rss_loaded / 1024, 1),
            rss_per_conn_kib=round(per_conn, 2),
            idle_window_s=round(window, 1),
            idle_nodes_cpu_pct=round(100 * (cpu1["nodes"] - cpu0["nodes"]) / window, 2),
            idle_clients_cpu_pct=round(100 * (cpu1["clients"] - cpu0["clients"]) / window, 2),
            clients_rss_mib=round(sum(procs.rss_kib(p) for p in client_pids) / 1024, 1),
            node0_open_files=open_files(nodes[0].pid),
        )
        say(f"node RSS {rss_loaded / 1024:.1f} MiB: {per_conn:.2f} KiB per connection; idle CPU "
            f"nodes {out['idle_nodes_cpu_pct']}% of a core, clients "
            f"{out['idle_clients_cpu_pct']}% over {window:.0f}s; clients RSS "
            f"{out['clients_rss_mib']} MiB")  # fmt: skip
        out.update(await storm(cfg, redis, nodes, clients, say))
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
        await asyncio.gather(*(n.stop(grace=30.0) for n in nodes), return_exceptions=True)
        await asyncio.to_thread(redis.cleanup)
        shutil.rmtree(tmp, ignore_errors=True)
        if logs is not None and keep_logs:
            say(f"node logs kept in {logs}")
        elif logs is not None:
            shutil.rmtree(logs, ignore_errors=True)
    return out


def open_files(pid: int) -> int | None:
    """Descriptors a process holds now (``/proc/<pid>/fd``), ``None`` when unreadable."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def failure_summary(counts: Iterable[dict[str, int]]) -> str:
    """Failed connection attempts of the client processes by reason, most frequent first."""
    total: dict[str, int] = {}
    for c in counts:
        for reason, n in c.items():
            total[reason] = total.get(reason, 0) + int(n)
    return ", ".join(f"{k}: {v}" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))


async def storm(
    cfg: ScaleConfig, redis: RedisProcess, nodes: list[NodeProcess], clients: list[procs.Child],
    say: Say,
) -> Metrics:  # fmt: skip
    """Restart node 0; every socket subscribed again, every message published meanwhile there."""
    node = nodes[0]
    for c in clients:
        await c.send("storm 0")
    done = [asyncio.ensure_future(c.event("storm_done", cfg.storm_timeout)) for c in clients]
    t0 = time.time()
    publishing = asyncio.ensure_future(
        publish(redis.url, queue_names(cfg), cfg.storm_messages, cfg.storm_rate)
    )
    # SIGTERM: a graceful shutdown closes every socket (1001); SIGKILL if not gone in 30 s,
    # as an orchestrator's grace period would (-9 in storm_node_exit)
    code = await node.stop(grace=STOP_GRACE_S)
    down_s = time.time() - t0
    await node.start(ready_timeout=60.0)
    up_s = time.time() - t0
    killed = " (SIGKILLed: still running 30 s after SIGTERM)" if code == -9 else ""
    say(f"node 0 stopped after {down_s:.1f}s{killed}, ready again at {up_s:.1f}s")
    results = await asyncio.gather(*done)
    storm_s = max(float(r["t"]) for r in results) - t0
    lost = [r for r in results if r["last_lost_t"]]  # a process may have had none on node 0
    first_closed_s = min(float(r["first_lost_t"]) for r in lost) - t0 if lost else None
    all_closed_s = max(float(r["last_lost_t"]) for r in lost) - t0 if lost else None
    per_node = [sum(r["per_node"][i] for r in results) for i in range(cfg.nodes)]
    attempts = sum(int(r["attempts"]) for r in results)
    failures = sum(int(r["failures"]) for r in results)
    refused = failure_summary(r["refusals"] for r in results)
    published = await publishing
    say(f"storm: node 0's sockets closed from {first_closed_s or 0:.1f}s to "
        f"{all_closed_s or 0:.1f}s after SIGTERM, every one subscribed again at {storm_s:.1f}s "
        f"(per node {per_node}, {attempts:,} attempts, {failures:,} failed); "
        f"{len(published)} messages published")  # fmt: skip
    deadline = time.monotonic() + cfg.deliver_timeout
    got = await received_ids(clients)
    while got < len(published) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)  # vt of messages in flight on closed sockets: no event for it
        got = await received_ids(clients)
    delivered_s = time.time() - t0
    for c in clients:
        await c.send("stop")
    finals = await asyncio.gather(*(c.event("result", 60) for c in clients))
    seen: set[str] = set()
    for f in finals:
        seen.update(f["ids"])
    delivered = len(seen & set(published))
    say(f"{delivered}/{len(published)} storm messages delivered, {delivered_s:.1f}s after SIGTERM")
    return {
        "storm_node_down_s": round(down_s, 1),
        "storm_node_exit": code,
        "storm_node_up_s": round(up_s, 1),
        "storm_first_closed_s": round(first_closed_s, 1) if first_closed_s is not None else None,
        "storm_all_closed_s": round(all_closed_s, 1) if all_closed_s is not None else None,
        "storm_all_subscribed_s": round(storm_s, 1),
        **{f"storm_node{i}_connections": n for i, n in enumerate(per_node)},
        "storm_attempts": attempts,
        "storm_failed_attempts": failures,
        "storm_failures": refused,
        "storm_published": len(published),
        "storm_delivered": delivered,
        "storm_delivered_after_s": round(delivered_s, 1),
    }


def scenario_config(profile: Profile) -> ScaleConfig:
    """The scale scenario's sizes from a benchmark profile (``--set scale_connections=...``)."""
    return ScaleConfig(
        connections=profile.scale_connections, nodes=profile.scale_nodes,
        initial_nodes=profile.scale_initial_nodes,
        queues=profile.scale_queues, users=profile.scale_users,
        client_procs=profile.scale_client_procs, idle=profile.scale_idle,
        storm_messages=profile.scale_storm_messages,
    )  # fmt: skip


async def scenario(profile: Profile, say: Say) -> Metrics:
    """``python -m bench --scenarios scale``: :func:`scale` with the profile's sizes."""
    return await scale(scenario_config(profile), say)


def parse_args(argv: list[str] | None) -> tuple[ScaleConfig, str | None, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description="Hold N authenticated, subscribed idle wsmq.v1 sockets on one node: node "
        "RSS per socket, idle CPU, then a reconnect storm. See docs/bench.md.",
    )
    defaults = ScaleConfig()
    for f in fields(ScaleConfig):
        value = getattr(defaults, f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=type(value), default=value,
            help=f"(default {value})",
        )  # fmt: skip
    parser.add_argument("--out", default=None, help="also write the result (JSON) to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the nodes' log files")
    args = parser.parse_args(argv)
    cfg = ScaleConfig(**{f.name: getattr(args, f.name) for f in fields(ScaleConfig)})
    try:
        cfg.check()
    except ValueError as exc:
        parser.error(str(exc))
    return cfg, args.out, bool(args.keep_logs)


def main(argv: list[str] | None = None) -> int:
    from bench.run import Progress  # bench.run imports this module

    cfg, out, keep_logs = parse_args(argv)
    try:
        result = asyncio.run(scale(cfg, Progress(), keep_logs=keep_logs))
    except ScaleLimitError as exc:
        sys.stderr.write(f"python -m bench.scale: {exc}\n")
        return 2
    text = json.dumps({"config": asdict(cfg), "scale": result}, indent=2)
    sys.stdout.write(text + "\n")
    if out:
        Path(out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

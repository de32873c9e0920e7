"""Handshakes alone: wsmq against the pub/sub bridge, node CPU per handshake, optional profile.

``scripts/bench --scenarios connections`` measures handshakes/s together with RSS per idle
connection (and waits for RSS to settle). This runs only the handshake part, in rounds that
alternate the systems, and adds what the node's own CPU time says (steadier than a rate on a
shared machine):

    python -m bench.handshakes                                  # wsmq and pubsub, 3 rounds
    python -m bench.handshakes --systems wsmq --profile /tmp/p  # pyinstrument in the node
    python -m bench.handshakes --wsmq-path ../other-tree        # wsmq nodes from another tree

Per round and system: one fresh node on a private Redis, ``--count`` clients (the Node.js load
generator, ``--concurrency`` handshakes in flight, one queue each, legacy mode), then the same
wait as the connections scenario until wsmq's node counts every subscription. Reported per
system: ``handshakes_per_s`` (the client's count over its connect time), ``node_cpu_us`` per
handshake (the node's user + system CPU from the first handshake to the last socket open,
subscribe frames it read meanwhile included), ``client_cpu_us`` (the same for the client
process, its start-up included) and, for wsmq, ``subscribed_s`` (last handshake
to every subscription in place) and ``subscribe_cpu_us`` per subscription.
``--profile DIR`` runs each wsmq node under ``pyinstrument`` (installed separately) and writes
its text report to ``DIR/wsmq-<round>.txt`` when the node stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import procs
from bench.capacity import wait_subscriptions
from bench.delivery import prepare, start_consumers
from bench.systems import PubSubBridge, Running, System, Wsmq
from wsmq.testing.nodes import wsmq_command

SYSTEMS = ("wsmq", "pubsub")


def make_system(name: str, args: argparse.Namespace, round_no: int) -> System:
    if name == "pubsub":
        return PubSubBridge()
    command = shlex.split(args.wsmq_command) if args.wsmq_command else wsmq_command()
    if args.profile:
        out = Path(args.profile) / f"wsmq-{round_no}.txt"
        command = [
            sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-i", "0.0005",
            "-o", str(out), "-m", "wsmq",
        ]  # fmt: skip
    env = None
    if args.wsmq_path:
        env = {**os.environ, "PYTHONPATH": str(Path(args.wsmq_path).resolve())}
    return Wsmq(command=command, env=env)


async def one(
    system: System, count: int, concurrency: int, profile: bool = False
) -> dict[str, float]:
    queues = [f"hs{i}" for i in range(count)]
    system.plan(queues)
    running: Running = await system.start(1, queues)
    try:
        await prepare(running, queues)
        pid = running.pids[0]
        cpu0 = procs.cpu_seconds(pid)
        consumers, ready = await start_consumers(
            running, queues, "legacy", connect_concurrency=concurrency
        )
        try:
            cpu1 = procs.cpu_seconds(pid)
            k = int(ready["connections"])
            out = {
                "handshakes_per_s": k / max(float(ready["connect_s"]), 1e-9),
                "node_cpu_us": 1e6 * (cpu1 - cpu0) / k,
                # the client process's start-up (~50 ms of Node.js) included
                "client_cpu_us": 1e6 * procs.cpu_seconds(consumers.pid) / k,
            }
            started = time.monotonic()
            if await wait_subscriptions(running, k):
                out["subscribed_s"] = time.monotonic() - started
                out["subscribe_cpu_us"] = 1e6 * (procs.cpu_seconds(pid) - cpu1) / k
            await consumers.send("stop")
            with contextlib.suppress(procs.ChildError):
                await consumers.event("result", 30)
        finally:
            await consumers.stop()
    finally:
        if profile:  # pyinstrument writes its report as the node exits: give it time
            await asyncio.gather(*(s.stop(grace=120.0) for s in running.servers))
        await running.stop()
        await system.close()
    return out


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {s: [] for s in args.systems}
    for round_no in range(args.rounds):
        # rotate the order so no system always goes first
        order = (
            args.systems[round_no % len(args.systems) :]
            + args.systems[: round_no % len(args.systems)]
        )
        for name in order:
            system = make_system(name, args, round_no)
            profile = bool(args.profile) and name == "wsmq"
            metrics = await one(system, args.count, args.concurrency, profile)
            results[name].append(metrics)
            shown = "  ".join(f"{k} {v:,.1f}" for k, v in metrics.items())
            print(f"[round {round_no}] {name:7s} {shown}", file=sys.stderr, flush=True)
    return results


def summary(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per system and metric: median, min and max over the rounds; and wsmq/pubsub per round."""
    out: dict[str, dict[str, Any]] = {}
    for name, rounds in results.items():
        metrics = sorted({k for r in rounds for k in r})
        out[name] = {
            m: {
                "median": round(statistics.median(v), 1),
                "min": round(min(v), 1),
                "max": round(max(v), 1),
            }
            for m in metrics
            if (v := [r[m] for r in rounds if m in r])
        }
    if "wsmq" in results and "pubsub" in results:
        pairs = zip(results["wsmq"], results["pubsub"], strict=False)
        out["wsmq/pubsub handshakes"] = {
            "per_round": [round(w["handshakes_per_s"] / p["handshakes_per_s"], 2) for w, p in pairs]
        }
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.handshakes", description=__doc__)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="wsmq,pubsub (default)")
    parser.add_argument("--count", type=int, default=3000, help="clients per round (3000)")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight (50)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", metavar="DIR", help="pyinstrument reports of wsmq nodes")
    parser.add_argument("--wsmq-path", metavar="DIR", help="PYTHONPATH of the wsmq nodes")
    parser.add_argument("--wsmq-command", help="how to run the wsmq CLI (default: the venv's)")
    args = parser.parse_args(argv)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.run import raise_fd_limit

    raise_fd_limit()
    results = asyncio.run(run(args))
    print(json.dumps({"rounds": results, "summary": summary(results)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Idle latency with and without the hand-off, interleaved (docs/delivery.md, "Hand-off").

One private Redis, two ``wsmq serve`` nodes on it (one started with ``--no-handoff``), one legacy
client on each, subscribed to its user's queue. Messages go to the two queues alternately, one
at a time, after a random gap, so a change of load hits both sides alike. Latency is taken in
this process, from just before ``send_message`` to the client's frame, so it includes the
send's own round trip::

    python -m bench.handoff                    # 150 messages per side
    python -m bench.handoff --samples 500 --json /tmp/handoff.json

The ``latency`` scenario of ``scripts/bench`` measures the same path against the peers, with
20 idle samples per run; this is the side-by-side A/B with enough samples to resolve ±0.1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import tempfile
import time
from pathlib import Path

import aiohttp

from wsmq.queue import Queues
from wsmq.testing.nodes import NodeProcess
from wsmq.testing.redisproc import RedisProcess
from wsmq.testing.users import make_users

SIDES = ("handoff", "no-handoff")


def summary(samples: list[float]) -> dict[str, float]:
    xs = sorted(samples)
    return {
        "n": len(xs),
        "p50_ms": round(xs[len(xs) // 2], 3),
        "p90_ms": round(xs[int(len(xs) * 0.9)], 3),
        "min_ms": round(xs[0], 3),
        "max_ms": round(xs[-1], 3),
    }


async def handoffs_taken(http: aiohttp.ClientSession, node: NodeProcess) -> int:
    async with http.get(f"{node.http_url}/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith('wsmq_handoffs_total{result="taken"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def run(samples: int, gap: tuple[float, float], workdir: Path) -> dict[str, object]:
    secret = secrets.token_hex(32)  # hex: never starts with "-" (argparse)
    redis = RedisProcess().start()
    nodes: dict[str, NodeProcess] = {}
    queues = Queues.from_url(redis.url, realtime=True)
    try:
        users_file = workdir / "users.json"
        users = await make_users(users_file, 2, secret=secret, ttl=3600)
        for side in SIDES:
            extra = ("--no-handoff",) if side == "no-handoff" else ()
            node = NodeProcess.serve(
                workdir / f"{side}.log", "--redis-url", redis.url,
                "--users-file", str(users_file), "--secret", secret, *extra,
            )  # fmt: skip
            nodes[side] = await node.start(ready_timeout=20)
        latencies: dict[str, list[float]] = {side: [] for side in SIDES}
        async with aiohttp.ClientSession() as http:
            sockets = {}
            for side, user in zip(SIDES, users, strict=True):
                await queues.create_queue(user.user_id)
                headers = {"x-token": user.x_token, "x-access-token": user.access_token}
                ws = await http.ws_connect(nodes[side].url, headers=headers)
                await ws.send_str(f"/subscribe/{user.user_id}")
                sockets[side] = (ws, user.user_id)
            # Subscribed (legacy: no reply) and parked: a first message through each.
            for ws, qname in sockets.values():
                await queues.send_message(qname, "warm-up")
                await ws.receive(timeout=10)
            rng = random.Random(7)
            for i in range(samples):
                for side in SIDES if i % 2 else SIDES[::-1]:
                    ws, qname = sockets[side]
                    await asyncio.sleep(rng.uniform(*gap))  # the idle gap is the measurement
                    start = time.perf_counter()
                    frame = asyncio.ensure_future(ws.receive(timeout=10))
                    await queues.send_message(qname, "x")
                    msg = await frame
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"{side}: expected a message, got {msg.type}")
                    latencies[side].append((time.perf_counter() - start) * 1000)
            taken = {side: await handoffs_taken(http, nodes[side]) for side in SIDES}
            for ws, _ in sockets.values():
                await ws.close()
        return {side: {**summary(latencies[side]), "handoffs_taken": taken[side]} for side in SIDES}
    finally:
        await queues.close()
        for node in nodes.values():
            await node.stop()
        redis.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--samples", type=int, default=150, help="messages per side")
    parser.add_argument("--gap", type=float, nargs=2, default=(0.05, 0.25), metavar=("MIN", "MAX"))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wsmq-bench-handoff-") as tmp:
        results = asyncio.run(run(args.samples, (args.gap[0], args.gap[1]), Path(tmp)))
    for side, row in results.items():
        print(f"{side:>10}: {row}")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()

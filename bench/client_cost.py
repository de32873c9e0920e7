"""What ``wsmq.client`` costs per message, next to a raw aiohttp loop doing the same work.

One wsmq node (``bench.hotpath``'s: a child process, auth off) on a private redis-server. For
each round and each consumer (in turn, so load drifts hit all alike) a fresh queue gets ``--n``
messages, then one consumer *process* subscribes (``wsmq.v1``) and acks each message:

- ``raw``: ``ws.receive()``, ``json.loads``, one ``/ack`` frame per message (the bench's loop);
- ``raw_bulk``: the same with one bulk ``/ack`` per socket read (``bench.loadgen.AckBatcher``);
- ``client``: ``async for d in client.subscribe(q): await d.ack()`` (acks coalesced per turn).

Each reports msg/s (subscribe → every ack answered; ``client``: the last ack, confirmed) and its
process CPU per message (``time.process_time``). Medians of ``--rounds``; every run is printed::

    python -m bench.client_cost                 # 50k messages, 3 rounds
    python -m bench --scenarios client          # the same as a scenario of the bench run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `wsmq` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.loadgen import AckBatcher
from wsmq.protocol.wire import SUBPROTOCOL

KINDS = ("raw", "raw_bulk", "client")
ROOT = Path(__file__).resolve().parent.parent


# --- the consumers (each in a process of its own) ----------------------------------------------


async def _raw(url: str, qname: str, n: int, bulk: bool) -> int:
    """The bench's loop: returns the messages handled once every ack is answered."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=(SUBPROTOCOL,), max_msg_size=0) as ws,
    ):
        await ws.send_str(f"/subscribe/{qname}")
        batcher = AckBatcher(ws) if bulk else None
        got = acked = 0
        while acked < n:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"socket closed: {msg!r}")
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "message":
                got += 1
                if batcher is not None:
                    batcher.add(qname, frame["id"])
                else:
                    await ws.send_str(f"/ack/{qname}/{frame['id']}")
            elif kind == "acked":
                acked += 1
        return got


async def _client(url: str, qname: str, n: int) -> int:
    from wsmq.client import connect

    async def tokens() -> tuple[str, str]:
        return "bench", "bench"  # the bench node authenticates everyone

    got = 0
    async with connect([url], tokens=tokens, heartbeat=None) as client:
        async for d in client.subscribe(qname):
            got += 1
            if got == n:
                if not await d.ack(confirm=True):
                    raise RuntimeError("the last ack was not confirmed")
                break
            await d.ack()
    return got


def consume(kind: str, url: str, qname: str, n: int) -> dict[str, float]:
    """One consumer run in this process: msg/s and CPU µs per message."""
    import wsmq.client  # noqa: F401  (imported before the clock starts, like aiohttp)

    async def main() -> int:
        if kind == "client":
            return await _client(url, qname, n)
        return await _raw(url, qname, n, bulk=kind == "raw_bulk")

    wall, cpu = time.perf_counter(), time.process_time()
    got = asyncio.run(main())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if got != n:
        raise RuntimeError(f"{kind}: handled {got} of {n}")
    return {"msgs_per_s": n / wall, "cpu_us_per_msg": cpu / n * 1e6}


# --- the driver --------------------------------------------------------------------------------


def measure(
    n: int = 50_000,
    rounds: int = 3,
    window: int = 200,
    size: int = 100,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``rounds`` times each consumer of :data:`KINDS`; ``{kind: medians, "runs": ...}``."""
    from bench.hotpath import RealServer
    from wsmq.queue import Queues
    from wsmq.testing.redisproc import RedisProcess

    redis = RedisProcess().start()
    server_args = argparse.Namespace(
        window=window, batch=100, uvloop=False, profile=False, server_ack_concurrency=0
    )
    server = RealServer(redis.url, server_args)
    url = f"ws://127.0.0.1:{server.port}/"
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    try:
        for round_no in range(rounds):
            order = KINDS[round_no % len(KINDS) :] + KINDS[: round_no % len(KINDS)]
            for kind in order:
                qname = f"cost{round_no}{kind.replace('_', '')}"
                asyncio.run(_preload(redis.url, qname, n, size, Queues))
                out = subprocess.run(
                    [sys.executable, "-m", "bench.client_cost", "--consume", kind,
                     "--url", url, "--queue", qname, "--n", str(n)],
                    cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
                )  # fmt: skip
                result = json.loads(out.stdout.strip().splitlines()[-1])
                runs[kind].append(result)
                say(
                    f"round {round_no + 1} {kind:8} {result['msgs_per_s']:9,.0f} msg/s "
                    f"{result['cpu_us_per_msg']:6.1f} µs CPU/msg"
                )
    finally:
        server.close()
        redis.stop()
    medians: dict[str, Any] = {
        kind: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for kind, results in runs.items()
    }
    medians["runs"] = runs
    return medians


async def scenario(profile: Any, say: Callable[[str], None]) -> dict[str, Any]:
    """``python -m bench --scenarios client``: the columns are ``wsmq`` (the client), ``raw``
    and ``raw_bulk``, so the bench's ratios read client / raw loop."""
    quick = profile.name == "quick"
    n, rounds = (10_000, 1) if quick else (50_000, 3)
    # measure() runs event loops of its own (asyncio.run): give it a thread of its own.
    result = await asyncio.to_thread(measure, n, rounds, say=say)
    return {"wsmq": result["client"], "raw": result["raw"], "raw_bulk": result["raw_bulk"]}


async def _preload(url: str, qname: str, n: int, size: int, queues_cls: Any) -> None:
    queues = queues_cls.from_url(url)
    try:
        await queues.create_queue(qname)
        body = "x" * size
        for start in range(0, n, 1000):
            await queues.send_messages(qname, [body] * min(1000, n - start))
    finally:
        await queues.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="messages per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=200, help="the node's subscription window")
    ap.add_argument("--size", type=int, default=100, help="body bytes")
    ap.add_argument("--consume", choices=KINDS, help=argparse.SUPPRESS)  # a consumer process
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--queue", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.consume:
        print(json.dumps(consume(args.consume, args.url, args.queue, args.n)), flush=True)
        return 0
    print(f"# client_cost: n={args.n} rounds={args.rounds} window={args.window} size={args.size}")
    result = measure(args.n, args.rounds, args.window, args.size)
    for kind in KINDS:
        m = result[kind]
        print(
            f"median {kind:8} {m['msgs_per_s']:9,.0f} msg/s {m['cpu_us_per_msg']:6.1f} µs CPU/msg"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Redis CPU per message of the delivery path's scripts, two script versions side by side.

Starts a private redis-server (never a shared one) and loads two versions of the scripts into
it: ``old`` (the Lua files at a git ref, ``main`` by default, read with ``git show``) and
``new`` (this checkout's ``wsmq/queue/lua``). Each round then runs, for ``old`` and ``new`` in
turn (A B A B ...), on a queue of its own:

- ``send``: N messages through ``send.lua`` (what the benchmark's publishers run), realtime
  publish on as in production, pipelined;
- ``receive`` / ``delete``: the queue drained as the delivery engine does it: receive batches of
  ``--batch`` (the engine's ``batch_size``; with the next-visible report and the devices check
  the consumer asks for), then group deletes of ``--group`` ids of what was received;
- ``send_batch``: N messages through ``send_batch.lua``, ``--batch`` per call, then drained again
  (counted with the first drain).

Per phase it reports Redis's own figures: ``INFO commandstats`` ``evalsha`` µs per message (the
scripts' run time) and the ``used_cpu_user + used_cpu_sys`` delta per message (everything Redis
spent: parsing, replies, the event loop). Receives and deletes alternate in blocks of
``--block`` messages with a snapshot between, so each is counted apart.

    python -m bench.script_cost [--messages 100000] [--rounds 3] [--batch 100] [--group 100]
                                [--body 100] [--old-ref main] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from wsmq.queue import Queues
from wsmq.queue.ids import random_suffix
from wsmq.queue.scripts import SCRIPTS
from wsmq.testing.redisproc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
LUA = "wsmq/queue/lua"
NAMES = ("send", "send_batch", "receive", "delete")
PHASES = ("send", "send_batch", "receive", "delete")
MARKER_TTL = 60  # wsmq.queue.queues.SEND_MARKER_TTL
DROP_BUDGET = 1000  # wsmq.queue.queues.DROP_BUDGET
PIPELINE = 1000


def old_sources(ref: str) -> dict[str, str]:
    """The scripts at git ``ref``, prelude prepended as ``wsmq.queue.scripts`` does."""

    def show(name: str) -> str:
        return subprocess.run(
            ["git", "show", f"{ref}:{LUA}/{name}.lua"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    prelude = show("_prelude")
    return {name: prelude + "\n" + show(name) for name in NAMES}


def new_sources() -> dict[str, str]:
    return {name: SCRIPTS[name].source for name in NAMES}


@dataclass
class Tally:
    """One phase of one variant: totals, and the Redis CPU µs/msg of each block."""

    msgs: int = 0
    calls: int = 0
    usec: float = 0.0
    cpu_usec: float = 0.0
    blocks: list[float] = field(default_factory=list)

    def add(self, msgs: int, delta: tuple[int, float, float]) -> None:
        if msgs <= 0:
            return
        self.msgs += msgs
        self.calls += delta[0]
        self.usec += delta[1]
        self.cpu_usec += delta[2]
        self.blocks.append(delta[2] / msgs)


@dataclass
class Variant:
    name: str
    qname: str
    shas: dict[str, str]
    tally: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in PHASES})


async def snapshot(client: aioredis.Redis) -> tuple[int, float, float]:
    """(evalsha calls, evalsha µs, used CPU µs) so far."""
    stats = await client.info("commandstats")
    cpu = await client.info("cpu")
    ev = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    used = (float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6
    return int(ev["calls"]), float(ev["usec"]), used


def diff(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    return b[0] - a[0], b[1] - a[1], b[2] - a[2]


class Runner:
    """Runs every phase block by block, alternating the variants (A B A B ...), so a change in
    the machine's load hits both alike."""

    def __init__(self, client: aioredis.Redis, queues: Queues, args: argparse.Namespace) -> None:
        self.client = client
        self.queues = queues
        self.args = args
        self.body = "x" * args.body

    async def measured(self, msgs: int, tally: Tally, coro: Any) -> Any:
        before = await snapshot(self.client)
        result = await coro
        tally.add(msgs, diff(before, await snapshot(self.client)))
        return result

    async def send_block(self, v: Variant, n: int) -> None:
        keys = self.queues.keys
        target = self.queues.publish_target(v.qname)
        qkeys = [keys.messages(v.qname), keys.attributes(v.qname)]
        pipe = self.client.pipeline(transaction=False)
        for _ in range(n):
            suffix = random_suffix()
            pipe.evalsha(
                v.shas["send"], 3, *qkeys, keys.send_marker(v.qname, suffix),
                suffix, self.body, len(self.body), "", target, MARKER_TTL,
            )  # fmt: skip
        await pipe.execute()

    async def send_batch_block(self, v: Variant, n: int) -> None:
        keys = self.queues.keys
        target = self.queues.publish_target(v.qname)
        qkeys = [keys.messages(v.qname), keys.attributes(v.qname)]
        pipe = self.client.pipeline(transaction=False)
        while n > 0:
            size = min(self.args.batch, n)
            suffixes = [random_suffix() for _ in range(size)]
            args: list[str | int] = ["", target, MARKER_TTL]
            for s in suffixes:
                args += [s, self.body, len(self.body)]
            marker = keys.send_marker(v.qname, suffixes[0])
            pipe.evalsha(v.shas["send_batch"], 3, *qkeys, marker, *args)
            n -= size
        await pipe.execute()

    async def fill(self, phase: str) -> None:
        left = self.args.messages
        while left > 0:
            n = min(self.args.block, left)
            for v in self.variants:
                block = self.send_block if phase == "send" else self.send_batch_block
                await self.measured(n, v.tally[phase], block(v, n))
            left -= n

    async def receive_block(self, v: Variant) -> list[str]:
        """Receive batches (as the engine's consumer asks) until a block or the queue is done."""
        keys = self.queues.keys
        qkeys = [keys.messages(v.qname), keys.attributes(v.qname), keys.devices(v.qname)]
        args = [self.args.batch, 30, "0", "", "", DROP_BUDGET, "1", 3, "0"]
        ids: list[str] = []
        while len(ids) < self.args.block:
            got = (await self.client.evalsha(v.shas["receive"], 3, *qkeys, *args))[2:]
            ids += [got[i] for i in range(0, len(got), 4)]
            if len(got) < 4 * self.args.batch:
                break
        return ids

    async def delete_block(self, v: Variant, ids: list[str]) -> None:
        qkeys = [self.queues.keys.messages(v.qname), self.queues.keys.attributes(v.qname)]
        for i in range(0, len(ids), self.args.group):
            part = ids[i : i + self.args.group]
            n = await self.client.evalsha(v.shas["delete"], 2, *qkeys, *part)
            if int(n) != len(part):
                raise RuntimeError(f"{v.name}: deleted {n} of {len(part)}")

    async def drain(self) -> None:
        active = list(self.variants)
        while active:
            for v in list(active):
                before = await snapshot(self.client)
                ids = await self.receive_block(v)
                v.tally["receive"].add(len(ids), diff(before, await snapshot(self.client)))
                await self.measured(len(ids), v.tally["delete"], self.delete_block(v, ids))
                if len(ids) < self.args.block:
                    active.remove(v)
        for v in self.variants:
            left = await self.client.zcard(self.queues.keys.messages(v.qname))
            if left:
                raise RuntimeError(f"{v.name}: {left} messages left after the drain")

    async def round(self, variants: list[Variant]) -> None:
        self.variants = variants
        await self.fill("send")
        await self.drain()
        await self.fill("send_batch")
        await self.drain()


def median_ratio(old: Tally, new: Tally) -> float:
    pairs = [b / a for a, b in zip(old.blocks, new.blocks, strict=False) if a > 0]
    return statistics.median(pairs) if pairs else float("nan")


def table(variants: list[Variant]) -> tuple[str, dict[str, Any]]:
    old, new = variants
    lines = [
        "phase | evalsha µs/msg old | new | Redis CPU µs/msg old | new "
        "| new/old (median of block pairs)",
        "---|---|---|---|---|---",
    ]
    data: dict[str, Any] = {}
    for phase in PHASES:
        a, b = old.tally[phase], new.tally[phase]
        row = [a.usec / a.msgs, b.usec / b.msgs, a.cpu_usec / a.msgs, b.cpu_usec / b.msgs]
        ratio = median_ratio(a, b)
        data[phase] = {"old": vars(a), "new": vars(b), "ratio": ratio}
        lines.append(f"{phase} | " + " | ".join(f"{x:.2f}" for x in row) + f" | {ratio:.2f}")
    return "\n".join(lines), data


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with RedisProcess() as server:
        client = aioredis.Redis.from_url(server.url, decode_responses=True)
        queues = Queues(client, realtime=True)
        try:
            variants = []
            for name, sources in (("old " + args.old_ref, old_sources(args.old_ref)),
                                  ("new", new_sources())):  # fmt: skip
                shas = {n: str(await client.script_load(src)) for n, src in sources.items()}
                qname = "cost_" + name.split()[0]
                await queues.create_queue(qname)
                variants.append(Variant(name, qname, shas))
            runner = Runner(client, queues, args)
            for r in range(args.rounds):
                await runner.round(variants)
                print(f"round {r + 1} done", file=sys.stderr)
            text, data = table(variants)
        finally:
            await client.aclose()
    print(
        f"{args.messages} messages of {args.body} B per phase, receive batch {args.batch}, "
        f"delete group {args.group}, {args.rounds} rounds (totals over the rounds); "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(text)
    return {"args": vars(args), "results": data}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=100, help="receive / send_batch size")
    p.add_argument("--group", type=int, default=100, help="ids per delete call")
    p.add_argument("--block", type=int, default=2000, help="messages per receive/delete block")
    p.add_argument("--body", type=int, default=100, help="message size in bytes")
    p.add_argument("--old-ref", default="main", help="git ref of the old scripts")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    out = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()

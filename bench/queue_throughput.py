"""Queue-layer throughput: wsmq send / batch receive / batch delete vs. redis-benchmark.

Starts a private redis-server (never a shared one), then measures, in messages per second:

- ``send bN``: ``Queues.send_message`` (N = 1) or ``Queues.send_messages`` with N per call
  (realtime publish on, as in production);
- ``receive bN``: ``Queues.receive_messages(count=N)`` until the queue is empty;
- ``delete bN``: ``Queues.delete_messages`` with N ids per call;
- ``redis-py zadd``: one plain ZADD per call on the same client (the Python client's floor);

each with 1 and several concurrent asyncio tasks sharing one ``Queues`` (one connection pool),
and runs ``redis-benchmark`` against the same server in the same run as the ceiling of what the
machine does with plain commands (unpipelined and pipelined).

    python bench/queue_throughput.py [--messages 5000] [--tasks 1,4] [--batches 1,10,100] [--json F]

Other code calls :func:`measure` (returns a dict) or :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

QNAME = "bench_throughput"
BODY = '{"type":"chat","text":"' + "x" * 64 + '"}'  # ~90 bytes, a typical small event


async def _timed(tasks: int, work: Callable[[int], Awaitable[int]]) -> tuple[int, float]:
    """Run ``work(task_index)`` in ``tasks`` concurrent tasks; return (items done, seconds)."""
    start = time.perf_counter()
    done = await asyncio.gather(*(work(i) for i in range(tasks)))
    return sum(done), time.perf_counter() - start


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def _send(queues: Queues, n: int, batch: int, tasks: int) -> float:
    shares = _split(n, tasks)

    async def work(i: int) -> int:
        left = shares[i]
        while left > 0:
            size = min(batch, left)
            if size == 1:
                await queues.send_message(QNAME, BODY)
            else:
                await queues.send_messages(QNAME, [BODY] * size)
            left -= size
        return shares[i]

    count, secs = await _timed(tasks, work)
    return count / secs


async def _plain_zadd(queues: Queues, n: int, tasks: int) -> float:
    """The same client doing single ZADDs: the asyncio redis-py floor under every wsmq call."""
    shares = _split(n, tasks)
    key = f"{QNAME}:baseline"

    async def work(i: int) -> int:
        for j in range(shares[i]):
            await queues.redis.zadd(key, {f"{i}:{j}": j})
        return shares[i]

    count, secs = await _timed(tasks, work)
    await queues.redis.delete(key)
    return count / secs


async def _receive(queues: Queues, batch: int, tasks: int) -> tuple[float, list[str]]:
    ids: list[str] = []

    async def work(_: int) -> int:
        got = 0
        while True:
            msgs = await queues.receive_messages(QNAME, batch, vt=3600)
            if not msgs:
                return got
            got += len(msgs)
            ids.extend(m.id for m in msgs)

    count, secs = await _timed(tasks, work)
    return count / secs, ids


async def _delete(queues: Queues, ids: list[str], batch: int, tasks: int) -> float:
    chunks = [ids[i : i + batch] for i in range(0, len(ids), batch)]

    async def work(i: int) -> int:
        deleted = 0
        for chunk in chunks[i::tasks]:
            if batch == 1:
                deleted += int(await queues.delete_message(QNAME, chunk[0]))
            else:
                deleted += await queues.delete_messages(QNAME, chunk)
        return deleted

    count, secs = await _timed(tasks, work)
    if count != len(ids):
        raise RuntimeError(f"deleted {count} of {len(ids)} messages")
    return count / secs


async def _measure_wsmq(
    url: str, messages: int, tasks_list: Sequence[int], batches: Sequence[int]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    queues = Queues.from_url(url, ns="rsmq", realtime=True)
    try:
        await queues.create_queue(QNAME)
        for tasks in tasks_list:
            for batch in batches:
                rows.append(
                    _row(f"send b{batch}", tasks, await _send(queues, messages, batch, tasks))
                )
                recv_rate, ids = await _receive(queues, batch, tasks)
                if len(ids) != messages or len(set(ids)) != messages:
                    raise RuntimeError(f"received {len(ids)} ids, expected {messages} distinct")
                rows.append(_row(f"receive b{batch}", tasks, recv_rate))
                rows.append(
                    _row(f"delete b{batch}", tasks, await _delete(queues, ids, batch, tasks))
                )
            rate = await _plain_zadd(queues, messages, tasks)
            rows.append({**_row("zadd", tasks, rate), "tool": "redis-py"})
        await queues.delete_queue(QNAME)
    finally:
        await queues.close()
    return rows


def _row(op: str, tasks: int, rate: float) -> dict[str, Any]:
    return {"tool": "wsmq", "op": op, "concurrency": tasks, "pipeline": 1, "per_s": round(rate)}


def run_redis_benchmark(
    port: int, *, requests: int = 50_000, clients: int = 1, pipeline: int = 1
) -> list[dict[str, Any]]:
    """Run ``redis-benchmark -t set,lpush,zadd`` on 127.0.0.1:port; one row per command."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return []
    cmd = [exe, "-h", "127.0.0.1", "-p", str(port), "-t", "set,lpush,zadd"]
    cmd += ["-n", str(requests), "-c", str(clients), "-P", str(pipeline), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [
        {
            "tool": "redis-benchmark",
            "op": rec["test"].lower(),
            "concurrency": clients,
            "pipeline": pipeline,
            "per_s": round(float(rec["rps"])),
        }
        for rec in csv.DictReader(io.StringIO(out))
    ]


def measure(
    *,
    messages: int = 5000,
    tasks: Sequence[int] = (1, 4),
    batches: Sequence[int] = (1, 10, 100),
    redis_benchmark: bool = True,
) -> dict[str, Any]:
    """Run the whole measurement on a private redis-server and return the results.

    The result has ``rows`` (``tool``, ``op``, ``concurrency``, ``pipeline``, ``per_s``) and a
    description of the run (``messages``, ``python``, ``cpus``, ``loadavg``, ``started``).
    """
    proc = RedisProcess()
    proc.start()
    try:
        started = time.time()
        load_before = os.getloadavg()
        rows = asyncio.run(_measure_wsmq(proc.url, messages, tasks, batches))
        if redis_benchmark:
            for clients, pipeline in ((1, 1), (max(tasks), 1), (max(tasks), 16)):
                rows += run_redis_benchmark(proc.port, clients=clients, pipeline=pipeline)
        return {
            "rows": rows,
            "messages": messages,
            "body_bytes": len(BODY.encode()),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "started": started,
            "seconds": round(time.time() - started, 1),
        }
    finally:
        proc.cleanup()


def format_table(result: dict[str, Any]) -> str:
    """Render the rows as a fixed-width text table."""
    lines = [f"{'tool':<16}{'op':<14}{'tasks':>6}{'pipeline':>9}{'msg/s':>12}"]
    for r in result["rows"]:
        lines.append(
            f"{r['tool']:<16}{r['op']:<14}{r['concurrency']:>6}{r['pipeline']:>9}{r['per_s']:>12,}"
        )
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000, help="messages per phase")
    parser.add_argument("--tasks", type=_int_list, default=[1, 4], help="concurrency levels")
    parser.add_argument("--batches", type=_int_list, default=[1, 10, 100], help="batch sizes")
    parser.add_argument("--no-redis-benchmark", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the result to FILE")
    args = parser.parse_args(argv)
    result = measure(
        messages=args.messages,
        tasks=args.tasks,
        batches=args.batches,
        redis_benchmark=not args.no_redis_benchmark,
    )
    print(format_table(result))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A soak client process: holds many ``wsmq.v1`` connections, acks everything, churns a few.

Run by :mod:`tests.chaos.soak` as ``python -m tests.chaos.soak_client SPEC.json`` (one event
loop comfortably holds a few thousand sockets; the soak starts several of these processes).
Prints one JSON line ``{"event": "ready", ...}`` once every connection is subscribed, and
``{"event": "done", ...}`` with its counters after SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["ClientStats", "main"]


@dataclass
class ClientStats:
    received: int = 0
    acked: int = 0
    connects: int = 0
    errors: int = 0
    resubscribes: int = 0  # subscribes retried after an `unavailable` answer
    last_errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.last_errors) < 5:
            self.last_errors.append(text[:200])


class Conn:
    """One connection slot: (re)connects, subscribes to its user's queue, acks."""

    def __init__(self, spec: dict[str, Any], stats: ClientStats, stop: asyncio.Event) -> None:
        self.url: str = spec["url"]
        self.headers: dict[str, str] = spec["headers"]
        self.qname: str = spec["qname"]
        self.stats = stats
        self.stop = stop
        self.subscribed = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._retries: set[asyncio.Task[None]] = set()

    async def _resubscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await asyncio.sleep(random.uniform(0.5, 1.5))  # retry backoff
        with contextlib.suppress(Exception):
            if not ws.closed:
                await ws.send_str(f"/subscribe/{self.qname}")

    async def run(self, http: aiohttp.ClientSession, gate: asyncio.Semaphore) -> None:
        backoff = 0.1
        while not self.stop.is_set():
            try:
                async with gate, asyncio.timeout(30):
                    ws = await http.ws_connect(
                        self.url, headers=self.headers, protocols=("wsmq.v1",), heartbeat=30
                    )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.stats.error(f"connect: {exc!r}")
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))  # reconnect backoff
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            self.stats.connects += 1
            self.ws = ws
            try:
                await ws.send_str(f"/subscribe/{self.qname}")
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        break
                    frame = json.loads(msg.data)
                    kind = frame.get("type")
                    if kind == "message":
                        self.stats.received += 1
                        await ws.send_str(f"/ack/{frame['queue']}/{frame['id']}")
                    elif kind == "acked":
                        self.stats.acked += 1
                    elif kind == "subscribed":
                        self.subscribed.set()
                    elif kind == "error":
                        self.stats.error(msg.data)
                        if frame.get("code") == "unavailable" and "id" not in frame:
                            # A subscribe the node could not do now: retry it, as told.
                            self.stats.resubscribes += 1
                            retry = asyncio.create_task(self._resubscribe(ws))
                            self._retries.add(retry)
                            retry.add_done_callback(self._retries.discard)
            except (ConnectionError, aiohttp.ClientError) as exc:
                self.stats.error(repr(exc))
            finally:
                self.subscribed.clear()
                self.ws = None
                with contextlib.suppress(Exception):
                    await ws.close()

    async def churn(self) -> None:
        """Close the socket normally; :meth:`run` opens a fresh one (a client reconnecting)."""
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


async def run(spec: dict[str, Any]) -> ClientStats:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = ClientStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    conns = [Conn(c, stats, stop) for c in spec["connections"]]
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        gate = asyncio.Semaphore(int(spec.get("concurrency", 50)))
        tasks = [asyncio.create_task(c.run(http, gate)) for c in conns]
        waiter: asyncio.Future[Any] = asyncio.gather(*(c.subscribed.wait() for c in conns))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopped}, return_when="FIRST_COMPLETED")
        print(
            json.dumps({"event": "ready", "connections": sum(c.subscribed.is_set() for c in conns)})
        )
        sys.stdout.flush()
        churn_every = float(spec.get("churn_interval", 0))
        churn_count = int(spec.get("churn_count", 0))
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(churn_every or None):
                    await stop.wait()
            if churn_every and churn_count and not stop.is_set():
                for conn in random.sample(conns, min(churn_count, len(conns))):
                    await conn.churn()
        waiter.cancel()
        stopped.cancel()
        for conn in conns:
            await conn.churn()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as f:
        spec = json.load(f)
    try:
        import uvloop

        stats = uvloop.run(run(spec))
    except ImportError:
        stats = asyncio.run(run(spec))
    out = {"event": "done", **stats.__dict__}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

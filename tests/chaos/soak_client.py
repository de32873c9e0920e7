"""A soak client process: many ``wsmq.client`` clients (one connection each) ack everything;
a few are closed and opened again now and then (churn).

Run by :mod:`tests.chaos.soak` as ``python -m tests.chaos.soak_client SPEC.json`` (one event
loop comfortably holds a few thousand clients; the soak starts several of these processes).
Prints one JSON line ``{"event": "ready", ...}`` once every client is connected, and
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

from wsmq.backoff import Backoff
from wsmq.client import Client, CommandFailed, Connected, Disconnected, Event, connect

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
    """One connection slot: a ``wsmq.client`` client of its node, subscribed to its user's
    queue, acking everything. A churn closes the client and opens a new one (a client going
    away and coming back)."""

    def __init__(
        self,
        spec: dict[str, Any],
        stats: ClientStats,
        stop: asyncio.Event,
        http: aiohttp.ClientSession,
        gate: asyncio.Semaphore,
    ) -> None:
        self.url: str = spec["url"]
        self.headers: dict[str, str] = spec["headers"]
        self.qname: str = spec["qname"]
        self.stats = stats
        self.stop = stop
        self.http = http
        self.gate = gate  # bounds the handshakes in progress (a storm of thousands otherwise)
        self.connected = asyncio.Event()
        self._churn = asyncio.Event()

    async def _tokens(self) -> tuple[str, str]:
        return self.headers["x-token"], self.headers["x-access-token"]

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Connected):
            self.stats.connects += 1
            self.connected.set()
        elif isinstance(event, Disconnected):
            self.connected.clear()
            if event.code is None:  # refused, or the handshake failed
                self.stats.error(f"connect: {event.reason}")

    async def run(self) -> None:
        while not self.stop.is_set():
            self._churn.clear()
            try:
                client = connect(
                    [self.url], tokens=self._tokens, on_event=self._on_event, heartbeat=30,
                    backoff=Backoff(base=0.1, cap=5.0), session=self.http,
                )  # fmt: skip
                async with contextlib.AsyncExitStack() as stack:
                    async with self.gate, asyncio.timeout(30):  # connected, or a new client
                        await stack.enter_async_context(client)
                    await self._serve(client)
            except Exception as exc:  # the client ended (or its first connect timed out)
                self.stats.error(f"client: {exc!r}")
                await asyncio.sleep(random.uniform(0.5, 1.5))  # then a new one
            finally:
                self.connected.clear()

    async def _serve(self, client: Client) -> None:
        """Consume until a churn or the stop; leaving closes the client."""
        consuming = asyncio.create_task(self._consume(client))
        waits = [asyncio.create_task(e.wait()) for e in (self._churn, self.stop)]
        try:
            await asyncio.wait([consuming, *waits], return_when=asyncio.FIRST_COMPLETED)
            if consuming.done():
                consuming.result()  # the error that ended the client
        finally:
            for task in (consuming, *waits):
                task.cancel()
            await asyncio.gather(consuming, *waits, return_exceptions=True)

    async def _consume(self, client: Client) -> None:
        while True:
            try:
                async for d in client.subscribe(self.qname):
                    self.stats.received += 1
                    if await d.ack(confirm=True):
                        self.stats.acked += 1
                return
            except CommandFailed as exc:
                self.stats.error(str(exc))
                if exc.error_code != "unavailable":
                    raise
                # A subscribe the node could not do now: retry it, as told (the client gives
                # such a subscription up).
                self.stats.resubscribes += 1
                await asyncio.sleep(random.uniform(0.5, 1.5))  # retry backoff

    def churn(self) -> None:
        """Close this client; :meth:`run` opens a fresh one (a client reconnecting)."""
        self._churn.set()


async def run(spec: dict[str, Any]) -> ClientStats:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = ClientStats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        gate = asyncio.Semaphore(int(spec.get("concurrency", 50)))
        conns = [Conn(c, stats, stop, http, gate) for c in spec["connections"]]
        tasks = [asyncio.create_task(c.run()) for c in conns]
        waiter: asyncio.Future[Any] = asyncio.gather(*(c.connected.wait() for c in conns))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopped}, return_when="FIRST_COMPLETED")
        print(
            json.dumps({"event": "ready", "connections": sum(c.connected.is_set() for c in conns)})
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
                    conn.churn()
        waiter.cancel()
        stopped.cancel()
        # stop is set: every client closes its socket; what hangs is cancelled after 10 s.
        _, hanging = await asyncio.wait(tasks, timeout=10)
        for task in hanging:
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

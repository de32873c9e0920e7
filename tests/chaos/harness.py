"""Traffic and bookkeeping for the chaos suite: publishers, consumers on ``wsmq.client``, the
checker.

A :class:`Ledger` records every id a publisher got back from ``send_message`` (with its send
time) and every delivery a client saw (with its receive time and whether the server had already
confirmed an ack of that id). :func:`check` turns a ledger into a :class:`ChaosReport` without
any I/O, so the verdict logic is unit-tested on its own (``test_harness.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from wsmq.backoff import Backoff
from wsmq.client import (
    Client,
    CommandFailed,
    Connected,
    Delivery,
    Disconnected,
    Event,
    connect,
)
from wsmq.queue import Queues
from wsmq.testing.users import TestUser

__all__ = ["ChaosReport", "Consumer", "Ledger", "Publisher", "check"]


@dataclass
class Ledger:
    """Everything sent and delivered during one run (monotonic timestamps)."""

    sent: dict[str, float] = field(default_factory=dict)  # id -> when send_message returned
    queue_of: dict[str, str] = field(default_factory=dict)  # sent id -> queue
    bodies: dict[str, str] = field(default_factory=dict)  # id -> body (for sent and delivered)
    # bodies whose send raised: maybe stored (the reply was lost), then sent again
    ambiguous: set[str] = field(default_factory=set)
    deliveries: list[tuple[str, float]] = field(default_factory=list)  # (id, when received)
    first_seen: dict[str, float] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)  # ids the server answered "acked" for
    redelivered_after_ack: list[str] = field(default_factory=list)
    send_errors: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set on every delivery

    def record_send(self, msg_id: str, body: str, qname: str = "") -> None:
        self.sent[msg_id] = time.monotonic()
        self.bodies[msg_id] = body
        self.queue_of[msg_id] = qname

    def record_delivery(self, msg_id: str, body: str) -> None:
        now = time.monotonic()
        if msg_id in self.confirmed:
            self.redelivered_after_ack.append(msg_id)
        self.deliveries.append((msg_id, now))
        self.first_seen.setdefault(msg_id, now)
        self.bodies.setdefault(msg_id, body)
        self.progress.set()

    def all_delivered(self) -> bool:
        return len(self.first_seen) >= len(self.sent) and all(
            i in self.first_seen for i in self.sent
        )


@dataclass(frozen=True)
class ChaosReport:
    """The outcome of one fault run.

    Attributes:
        sent: ids ``send_message`` returned.
        delivered_unique: distinct ids delivered to clients.
        duplicates: deliveries beyond the first of an id.
        lost: sent ids never delivered.
        recovery_seconds: from the end of the fault until the last delivery (first or
            repeated) of a message sent before that moment: the backlog and the in-flight
            messages the fault orphaned are all out (``inf`` when something was lost).
        resume_seconds: from the end of the fault until the first message sent after it was
            delivered, for the slowest queue: every queue's consumer is flowing again.
        redelivered_after_ack: deliveries of an id whose ack the server had confirmed.
        unknown: delivered ids no publisher recorded and whose body no publisher sent.
        ambiguous_extra: extra stored copies of a sent body (a send retried after its first
            attempt had been applied but its reply lost): duplicates, not junk.
    """

    fault: str
    sent: int
    delivered_unique: int
    duplicates: int
    lost: int
    recovery_seconds: float
    resume_seconds: float = 0.0
    redelivered_after_ack: int = 0
    unknown: int = 0
    ambiguous_extra: int = 0
    send_errors: int = 0
    drain_seconds: float = 0.0
    reconnects: int = 0
    #: Messages sends handed straight to a parked consumer (docs/delivery.md, Hand-off), summed
    #: over the nodes alive at the end: the fault met that path too when > 0.
    handoffs: int = 0

    def line(self) -> str:
        """The figure line ``scripts/chaos`` prints."""
        return (
            f"chaos: fault={self.fault} sent={self.sent} delivered_unique={self.delivered_unique}"
            f" duplicates={self.duplicates} lost={self.lost}"
            f" recovery_s={self.recovery_seconds:.2f} resume_s={self.resume_seconds:.2f}"
            f" drain_s={self.drain_seconds:.2f}"
            f" reconnects={self.reconnects} send_errors={self.send_errors}"
            f" handoffs={self.handoffs}"
            f" acked_redelivered={self.redelivered_after_ack} resent_copies={self.ambiguous_extra}"
            f" unknown={self.unknown}"
        )


def check(
    ledger: Ledger,
    fault: str,
    fault_end: float,
    *,
    drain_seconds: float = 0.0,
    reconnects: int = 0,
) -> ChaosReport:
    """Compare what was sent with what was delivered (pure)."""
    delivered = ledger.first_seen
    lost = [i for i in ledger.sent if i not in delivered]
    extra = [i for i in delivered if i not in ledger.sent]
    # A delivered id nobody recorded is a second stored copy of a send when its body is one a
    # publisher sent: either the publisher retried after an error, or redis-py's own Retry
    # re-ran the send script after the connection died with the first run already applied.
    sent_bodies = {ledger.bodies[i] for i in ledger.sent} | ledger.ambiguous
    ambiguous_extra = [i for i in extra if ledger.bodies.get(i) in sent_bodies]
    # Recovery: the last delivery (first or repeated) of a message sent before the fault ended,
    # i.e. when the backlog and the in-flight messages the fault orphaned were all handed out.
    before = {i for i, t in ledger.sent.items() if t <= fault_end}
    recovery = float("inf") if lost else 0.0
    if not lost:
        last = max((t for i, t in ledger.deliveries if i in before), default=fault_end)
        recovery = max(0.0, last - fault_end)
    first_after: dict[str, float] = {}
    for i, t in ledger.sent.items():
        if t > fault_end:
            q = ledger.queue_of.get(i, "")
            seen = delivered.get(i, float("inf"))
            first_after[q] = min(first_after.get(q, float("inf")), seen)
    resume = max((t - fault_end for t in first_after.values()), default=0.0)
    return ChaosReport(
        fault=fault,
        sent=len(ledger.sent),
        delivered_unique=len(delivered),
        duplicates=len(ledger.deliveries) - len(delivered),
        lost=len(lost),
        recovery_seconds=recovery,
        resume_seconds=resume,
        redelivered_after_ack=len(ledger.redelivered_after_ack),
        unknown=len(extra) - len(ambiguous_extra),
        ambiguous_extra=len(ambiguous_extra),
        send_errors=ledger.send_errors,
        drain_seconds=drain_seconds,
        reconnects=reconnects,
    )


class Publisher:
    """Sends numbered messages (``<name>:<seq>``) round robin over ``qnames`` at ``rate``/s.

    A send that raises (Redis restarting, failing over) is retried with the same body until it
    succeeds, so every sequence number ends up stored; the body is remembered as ambiguous
    because the failed attempt may have been stored too. ``wait_replicas`` follows each send
    with ``WAIT n 1000`` (the documented way to know a send survives a failover).
    """

    def __init__(
        self,
        queues: Queues,
        qnames: Sequence[str],
        ledger: Ledger,
        *,
        name: str = "p0",
        rate: float = 200.0,
        wait_replicas: int = 0,
    ) -> None:
        self.queues = queues
        self.qnames = list(qnames)
        self.ledger = ledger
        self.name = name
        self.rate = rate
        self.wait_replicas = wait_replicas
        self.stop = asyncio.Event()
        self.seq = 0
        self._gate = asyncio.Event()  # cleared while paused
        self._gate.set()
        self._idle = asyncio.Event()  # set while no send is in progress
        self._idle.set()

    async def pause(self) -> None:
        """Stop sending and wait until the send in progress (if any) has returned."""
        self._gate.clear()
        await self._idle.wait()

    def resume(self) -> None:
        self._gate.set()

    async def _send_one(self, qname: str, body: str) -> None:
        backoff = 0.02
        while True:
            try:
                async with asyncio.timeout(15):
                    msg_id = await self.queues.send_message(qname, body)
                    if self.wait_replicas:
                        wait = self.queues.redis.execute_command
                        await wait("WAIT", self.wait_replicas, 1000)
            except Exception:
                # The send may have been stored before the connection died: remember the body
                # so a second stored copy is recognised, and send again.
                self.ledger.ambiguous.add(body)
                self.ledger.send_errors += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            self.ledger.record_send(msg_id, body, qname)
            return

    async def run(self) -> None:
        """Send until :attr:`stop` is set (paced at ``rate``; the pause is pacing, not sync)."""
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            qname = self.qnames[self.seq % len(self.qnames)]
            await self._gate.wait()
            self._idle.clear()
            try:
                await self._send_one(qname, f"{self.name}:{self.seq}")
            finally:
                self._idle.set()
            self.seq += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stop.wait()
            else:
                next_at = time.monotonic()  # fell behind (an outage): don't burst to catch up


class Consumer:
    """An application on the Python client (``wsmq.client``): subscribes to ``qnames``, records
    every delivery the client hands it, and acks it after a random 0..``ack_delay`` s of
    "processing" (so a fault finds a realistic number of messages in flight).

    The client does the rest: ``wsmq.v1``, reconnects by the close codes (jittered backoff
    50 ms → 1 s) to the next of ``urls`` (in order, from ``urls[start]``), heartbeats, renewing
    the subscriptions. Acks are confirmed (``ack(confirm=True)``), so the ledger knows which
    ids the server deleted. No ``dedupe``: the ledger sees every redelivery (the at-least-once
    contract under test). A subscribe answered ``unavailable`` (a node shutting down, Redis
    away) is made again shortly, as the protocol asks: the client gives such a subscription up.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        cred: TestUser,
        urls: Sequence[str],
        qnames: Sequence[str],
        ledger: Ledger,
        *,
        start: int = 0,
        heartbeat: float = 2.0,
        ack_delay: float = 0.0,
        device: str | None = None,
    ) -> None:
        self.http = http
        self.device = device  # subscribe as this device (its own inbox of each queue)
        self.cred = cred
        first = start % len(urls)
        self.urls = [*urls[first:], *urls[:first]]
        self.qnames = list(qnames)
        self.ledger = ledger
        self.heartbeat = heartbeat
        self.ack_delay = ack_delay
        self._acks: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()
        self.connected = asyncio.Event()  # set from the client's Connected to its Disconnected
        self.connections = 0
        self.close_codes: list[int | None] = []
        self.errors: list[str] = []
        self.last_url: str | None = None

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Connected):
            self.connections += 1
            self.last_url = event.node
            self.connected.set()
        elif isinstance(event, Disconnected):
            self.connected.clear()
            self.close_codes.append(event.code)
            if event.code is None:  # refused, or the handshake failed
                self.errors.append(f"{event.node}: {event.reason}"[:200])

    async def _tokens(self) -> tuple[str, str]:
        return self.cred.x_token, self.cred.access_token

    async def run(self) -> None:
        """Consume until :attr:`stop` is set (then leave ``async with``: the client closes)."""
        async with connect(
            self.urls, tokens=self._tokens, on_event=self._on_event, heartbeat=self.heartbeat,
            backoff=Backoff(base=0.05, cap=1.0), shuffle=False, session=self.http,
        ) as client:  # fmt: skip
            consuming = [asyncio.create_task(self._consume(client, q)) for q in self.qnames]
            stopped = asyncio.create_task(self.stop.wait())
            try:
                await asyncio.wait([stopped, *consuming], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in [stopped, *consuming, *self._acks]:
                    task.cancel()
                await asyncio.gather(stopped, *consuming, *self._acks, return_exceptions=True)

    async def _consume(self, client: Client, qname: str) -> None:
        while True:
            try:
                subscription = (
                    client.subscribe(qname)
                    if self.device is None
                    else client.subscribe(qname, device=self.device)
                )
                async for d in subscription:
                    self.ledger.record_delivery(d.id, d.message)
                    task = asyncio.create_task(self._ack_later(d))
                    self._acks.add(task)
                    task.add_done_callback(self._acks.discard)
                return
            except CommandFailed as exc:
                self.errors.append(f"subscribe {qname}: {exc}"[:200])
                if exc.error_code != "unavailable":
                    raise
                await self._pause(random.uniform(0.05, 0.2))
            except Exception as exc:  # the error that ended the client: a wait names it
                self.errors.append(f"client ended: {exc!r}"[:200])
                raise

    async def _ack_later(self, delivery: Delivery) -> None:
        await self._pause(random.uniform(0, self.ack_delay))  # simulated processing time
        # False: the connection that delivered it is gone (the ack is not sent: the message
        # comes back), or the server answered an error.
        if await delivery.ack(confirm=True):
            self.ledger.confirmed.add(delivery.id)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()

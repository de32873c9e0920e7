"""One fan-out of a queue at a time on this node, shared by its consumers (docs/delivery.md,
Devices, "Who copies, and when").

Every consumer of a fan-out queue on a node (each device inbox's, and a plain one while the
queue has devices) needs the queue's visible messages copied into the inboxes before it
receives. Run by each of them, that is N calls of ``fanout.lua`` per wake-up, each passing all
N inbox keys: Redis work grows with N². :class:`FanOutRuns` runs them once: a consumer asks for
a run and gets the result of the first run that *starts* after its request — the one already
queued, or a new one queued behind the run in flight. Whatever woke the consumer (a
notification, its timer, the poll) happened before that run reads the queue, so nothing it was
woken for is missed, and one wake-up of N consumers costs one run.

A run whose registry kept changing (devices subscribing in a burst,
:class:`~wsmq.queue.devices.DevicesChanging`) is retried here, a few times with a short
backoff; the episode (until the registry has been stable for :attr:`FanOutRuns.EPISODE_GAP`
seconds) is logged once, without a traceback. If it still fails, the waiting
consumers get the error and retry after their own backoff (quietly too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from wsmq.backoff import Backoff
from wsmq.engine.health import RedisHealth
from wsmq.engine.ports import QueueStore
from wsmq.queue.devices import FAN_OUT_BUDGET, DevicesChanging, FanOut

__all__ = ["FanOutRuns"]

log = logging.getLogger("wsmq.engine")


class FanOutRuns:
    """The fan-out runs of this node, at most one in flight and one queued per queue."""

    #: Most script calls in one run (each moves up to ``FAN_OUT_BUDGET`` messages).
    MAX_CALLS = 20
    #: Retries of a run while the registry keeps changing, before the consumers get the error.
    CHANGING_RETRIES = 6
    #: Seconds without a changing registry that end an episode (the next one is logged again).
    EPISODE_GAP = 10.0

    def __init__(
        self,
        queues: QueueStore,
        health: RedisHealth,
        retention_ms: int,
        on_fan_out: Callable[[str, FanOut], None],
    ) -> None:
        self.queues = queues
        self.health = health
        self.retention_ms = retention_ms
        self.on_fan_out = on_fan_out
        #: Script calls that found the registry changed on every attempt (a burst of devices).
        self.changing = 0
        self._queued: dict[str, asyncio.Future[FanOut]] = {}
        self._drivers: dict[str, asyncio.Task[None]] = {}
        # Queue -> monotonic time of its last changing registry: an episode, logged once.
        self._changing_at: dict[str, float] = {}

    def running(self, qname: str) -> bool:
        """A run of ``qname`` is in flight or queued (its consumers need no other wake-up)."""
        return qname in self._drivers

    async def request(self, qname: str) -> FanOut:
        """The result of the first run of ``qname`` that starts after this call."""
        fut = self._queued.get(qname)
        if fut is None:
            fut = self._queued[qname] = asyncio.get_running_loop().create_future()
            if qname not in self._drivers:
                self._drivers[qname] = asyncio.create_task(
                    self._drive(qname), name=f"wsmq-fan-out:{qname}"
                )
        # Shielded: a consumer cancelled while waiting must not cancel the others' run.
        return await asyncio.shield(fut)

    async def close(self) -> None:
        """Engine shutdown (after the consumers stopped): cancel the runs left."""
        drivers = list(self._drivers.values())
        for task in drivers:
            task.cancel()
        for task in drivers:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drive(self, qname: str) -> None:
        fut: asyncio.Future[FanOut] | None = None
        try:
            while (fut := self._queued.pop(qname, None)) is not None:
                try:
                    result = await self._run(qname)
                except Exception as exc:
                    if not fut.done():
                        fut.set_exception(exc)
                        fut.exception()  # retrieved: no "never retrieved" warning if unawaited
                else:
                    if not fut.done():
                        fut.set_result(result)
        finally:
            del self._drivers[qname]
            for left in (fut, self._queued.pop(qname, None)):
                if left is not None and not left.done():
                    left.cancel()

    async def _run(self, qname: str) -> FanOut:
        """Copy everything visible (calls of ``FAN_OUT_BUDGET`` messages, ``MAX_CALLS`` at
        most), retrying while the registry keeps changing."""
        backoff: Backoff | None = None
        while True:
            try:
                result = await self._calls(qname)
            except DevicesChanging:
                self.changing += 1
                now = time.monotonic()
                last = self._changing_at.get(qname)
                self._changing_at[qname] = now
                if last is None or now - last > self.EPISODE_GAP:
                    log.info(
                        "queue %s: devices are subscribing in a burst; the fan-out retries",
                        qname,
                        extra={"event": "devices_changing", "queue": qname},
                    )
                backoff = backoff or Backoff(base=0.01, cap=0.5)
                if backoff.attempt >= self.CHANGING_RETRIES:
                    raise
                await backoff.sleep()
                continue
            last = self._changing_at.get(qname)
            if last is not None and time.monotonic() - last > self.EPISODE_GAP:
                del self._changing_at[qname]  # the episode is over (and the map stays small)
            return result

    async def _calls(self, qname: str) -> FanOut:
        for _ in range(self.MAX_CALLS):
            result = await self.queues.fan_out(qname, self.retention_ms)
            if not self.health.healthy:
                self.health.ok()
            self.on_fan_out(qname, result)
            if result.moved < FAN_OUT_BUDGET:
                break
        return result

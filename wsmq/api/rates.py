"""Per-queue send and receive rates for charts, from samples of RSMQ's counters.

Every ``rate_sample_interval`` seconds the node reads ``totalsent`` and ``totalrecv`` of every
queue and keeps the samples of the last :data:`HISTORY` seconds **in memory** (a node that just
started has a short history; every node answers alike because the counters are shared). A
point is the change between two consecutive samples, scaled to a minute. A counter that went
down (the queue was deleted and created again) counts from zero.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from redis.exceptions import RedisError

from wsmq.queue.admin import QueueAdmin

__all__ = ["HISTORY", "RateSampler"]

log = logging.getLogger("wsmq.api")

#: Seconds of samples kept.
HISTORY = 900.0

Sample = tuple[float, int, int]  # (epoch s, totalsent, totalrecv)


class RateSampler:
    """Samples the counters of every queue every ``interval`` seconds."""

    def __init__(
        self,
        admin: QueueAdmin,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admin = admin
        self.interval = interval
        self.clock = clock
        self.samples: dict[str, deque[Sample]] = {}
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        """Take one sample of every queue."""
        counters = await self.admin.counters(await self.admin.queues.list_queues())
        now = self.clock()
        keep = int(HISTORY / self.interval) + 2
        for qname in list(self.samples):
            if qname not in counters:
                del self.samples[qname]
        for qname, (sent, recv) in counters.items():
            self.samples.setdefault(qname, deque(maxlen=keep)).append((now, sent, recv))

    def points(self, qname: str) -> list[dict[str, float]]:
        """``[{"t", "seconds", "sent", "received", "sentPerMinute", "receivedPerMinute"}]``,
        oldest first: one per pair of consecutive samples in the last :data:`HISTORY` s."""
        samples = list(self.samples.get(qname, ()))
        horizon = self.clock() - HISTORY
        out: list[dict[str, float]] = []
        for (t0, s0, r0), (t1, s1, r1) in itertools.pairwise(samples):
            if t1 < horizon or t1 <= t0:
                continue
            sent = s1 - s0 if s1 >= s0 else s1
            received = r1 - r0 if r1 >= r0 else r1
            scale = 60.0 / (t1 - t0)
            out.append(
                {
                    "t": round(t1, 3),
                    "seconds": round(t1 - t0, 3),
                    "sent": sent,
                    "received": received,
                    "sentPerMinute": round(sent * scale, 3),
                    "receivedPerMinute": round(received * scale, 3),
                }
            )
        return out

    def latest(self, qname: str) -> dict[str, float] | None:
        """The rates over roughly the last minute (None before two samples)."""
        points = self.points(qname)
        if not points:
            return None
        recent = [p for p in points if p["t"] >= points[-1]["t"] - 60.0]
        seconds = sum(p["seconds"] for p in recent)
        sent = sum(p["sent"] for p in recent)
        received = sum(p["received"] for p in recent)
        return {
            "sentPerMinute": round(sent * 60.0 / seconds, 3),
            "receivedPerMinute": round(received * 60.0 / seconds, 3),
        }

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                await self.sample()
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:  # debug: the engine already reports a Redis outage, once
                    log.debug("queue rate sampling failed (%s)", type(exc).__name__)
                failing = True
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wsmq-rate-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

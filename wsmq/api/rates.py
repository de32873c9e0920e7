"""Per-queue send and receive rates for charts, from samples of RSMQ's counters.

Every ``rate_sample_interval`` seconds the node reads ``totalsent`` and ``totalrecv`` of every
queue and keeps the samples of the last :data:`HISTORY` seconds **in memory** (a node that just
started has a short history; every node answers alike because the counters are shared). A
point is the change between two consecutive samples, scaled to a minute. A counter that went
down (the queue was deleted and created again) counts from zero.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from wsmq.queue.admin import QueueAdmin

from .periodic import Periodic

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
        self._periodic = Periodic("queue rate sampling", interval, self.sample)

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

    def _steps(self, qname: str) -> list[tuple[float, float, int, int]]:
        """``(t, seconds, sent, received)`` per pair of consecutive samples in the history."""
        samples = list(self.samples.get(qname, ()))
        horizon = self.clock() - HISTORY
        out: list[tuple[float, float, int, int]] = []
        for (t0, s0, r0), (t1, s1, r1) in itertools.pairwise(samples):
            if t1 >= horizon and t1 > t0:
                out.append((t1, t1 - t0, s1 - s0 if s1 >= s0 else s1, r1 - r0 if r1 >= r0 else r1))
        return out

    def points(self, qname: str) -> list[dict[str, float]]:
        """``[{"t", "seconds", "sent", "received", "sentPerMinute", "receivedPerMinute"}]``,
        oldest first: one per pair of consecutive samples in the last :data:`HISTORY` s."""
        return [
            {
                "t": round(t, 3),
                "seconds": round(seconds, 3),
                "sent": sent,
                "received": received,
                "sentPerMinute": round(sent * 60.0 / seconds, 3),
                "receivedPerMinute": round(received * 60.0 / seconds, 3),
            }
            for t, seconds, sent, received in self._steps(qname)
        ]

    def latest(self, qname: str) -> dict[str, float] | None:
        """The rates over roughly the last minute (None before two samples)."""
        steps = self._steps(qname)
        if not steps:
            return None
        recent = [s for s in steps if s[0] >= steps[-1][0] - 60.0]
        seconds = sum(s[1] for s in recent)
        return {
            "sentPerMinute": round(sum(s[2] for s in recent) * 60.0 / seconds, 3),
            "receivedPerMinute": round(sum(s[3] for s in recent) * 60.0 / seconds, 3),
        }

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

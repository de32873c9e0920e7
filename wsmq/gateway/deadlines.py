"""One event-loop timer for the session deadlines of every connection of a node.

Each connection has at most one pending deadline (the first-message auth deadline, the v1
``expiring`` warning, the token expiry). Waiting for it with ``ws.receive(timeout=...)`` would
cost every connection an ``asyncio.timeout`` context and a loop timer for its whole life, and
every frame a new pair. :class:`DeadlineTimer` keeps all deadlines in one heap and arms a single
loop timer for the earliest: an idle connection costs a heap entry, a frame nothing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

__all__ = ["DeadlineTimer", "Entry"]

log = logging.getLogger("wsmq.gateway")

T = TypeVar("T")


class Entry:
    """A scheduled deadline; ``item`` is ``None`` once cancelled or run. Ordered by time, then
    by scheduling order (the sequence number), never by item."""

    __slots__ = ("item", "seq", "when")

    def __init__(self, when: float, seq: int, item: object) -> None:
        self.when = when
        self.seq = seq
        self.item: object = item

    def __lt__(self, other: Entry) -> bool:
        return self.when < other.when or (self.when == other.when and self.seq < other.seq)


class DeadlineTimer(Generic[T]):
    """Calls ``due(item)`` once ``clock()`` reaches the time an item was scheduled for.

    ``clock`` is the wall clock (epoch seconds) because session deadlines are token times.
    The loop timer (monotonic) sleeps at most :attr:`MAX_SLEEP` before reading the wall clock
    again, so after a step of the clock (NTP) a deadline runs at most that late by the new
    clock, and never early.
    ``due`` is synchronous and runs in the loop's callback; it should spawn what must await.
    """

    #: Cancelled entries are dropped from the heap once they are this many and at least half
    #: of it (connection churn must not keep closed connections referenced until their expiry).
    COMPACT_MIN = 64
    #: Longest sleep of the loop timer between two readings of the wall clock (s).
    MAX_SLEEP = 30.0

    def __init__(self, due: Callable[[T], None], *, clock: Callable[[], float] = time.time):
        self._due = due
        self._clock = clock
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    def __len__(self) -> int:
        """Pending (not cancelled) deadlines."""
        return len(self._heap) - self._cancelled

    def schedule(self, when: float, item: T) -> Entry:
        """Run ``due(item)`` at ``when`` (epoch s; in the past: on the next loop iteration)."""
        entry = Entry(when, next(self._seq), item)
        heapq.heappush(self._heap, entry)
        if self._armed_for is None or when < self._armed_for:
            self._arm()
        return entry

    def cancel(self, entry: Entry | None) -> None:
        """Forget ``entry`` (no-op when it already ran or was cancelled)."""
        if entry is None or entry.item is None:
            return
        entry.item = None
        self._cancelled += 1
        if self._cancelled == len(self._heap):  # nothing left: no timer either
            self._heap.clear()
            self._cancelled = 0
            self.close()
        elif self._cancelled >= self.COMPACT_MIN and self._cancelled * 2 >= len(self._heap):
            self._heap = [e for e in self._heap if e.item is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def close(self) -> None:
        """Stop the loop timer (pending entries stay; the next :meth:`schedule` re-arms)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_for = None

    def _arm(self) -> None:
        heap = self._heap
        while heap and heap[0].item is None:  # cancelled entries on top: drop them now
            heapq.heappop(heap)
            self._cancelled -= 1
        self.close()
        if not heap:
            return
        when = heap[0].when
        loop = asyncio.get_running_loop()
        now = self._clock()
        delay = min(max(0.0, when - now), self.MAX_SLEEP)
        self._handle = loop.call_at(loop.time() + delay, self._fire)
        self._armed_for = now + delay

    def _fire(self) -> None:
        self._handle = None
        self._armed_for = None
        now = self._clock()
        heap = self._heap
        due: list[T] = []
        while heap and heap[0].when <= now:
            entry = heapq.heappop(heap)
            item = entry.item
            if item is None:
                self._cancelled -= 1
                continue
            entry.item = None
            due.append(cast(T, item))  # scheduled as a T
        for item in due:  # after the heap is settled: ``due`` may schedule again
            try:
                self._due(item)
            except Exception:  # one connection's bug must not stop the others' deadlines
                log.exception("deadline handler failed", extra={"event": "deadline_fail"})
        if self._handle is None:
            self._arm()

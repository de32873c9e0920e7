"""A sliding-window attempt limiter with an explicit clock (pure, no I/O)."""

from __future__ import annotations

from collections import OrderedDict, deque


class SlidingWindowLimiter:
    """At most ``limit`` attempts per key within any ``window`` seconds.

    Memory is bounded: at most ``max_keys`` keys are tracked; the least recently used go first.

    Args:
        limit: attempts allowed per window.
        window: window length in seconds.
        max_keys: how many keys (user names, IPs) to remember.
    """

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            hits = deque()
            self._hits[key] = hits
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        else:
            self._hits.move_to_end(key)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again (0 when it may try now). Records nothing."""
        hits = self._recent(key, now)
        if len(hits) < self.limit:
            return 0.0
        return max(hits[0] + self.window - now, 0.0)

    def hit(self, key: str, now: float) -> float:
        """Record an attempt if allowed: returns 0, or the seconds to wait (not recorded)."""
        wait = self.retry_after(key, now)
        if wait == 0.0:
            self._hits[key].append(now)
        return wait

    def reset(self, key: str) -> None:
        """Forget ``key`` (after a successful login, say)."""
        self._hits.pop(key, None)

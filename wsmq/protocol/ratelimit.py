"""A token bucket with an explicit clock (pure: the caller passes ``now``)."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allow ``rate`` events per second on average, with bursts of up to ``burst``.

    The bucket starts full. Time is whatever monotonic clock the caller uses
    (``loop.time()`` in the server, plain numbers in tests); a clock that goes backwards
    adds nothing.

    Example::

        bucket = TokenBucket(rate=50, burst=100, now=loop.time())
        if not bucket.take(loop.time()):
            ...  # over the limit
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._last = now

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Consume ``n`` tokens if available; return False (consuming nothing) otherwise."""
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def available(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, burst={self.burst}, tokens={self._tokens:.2f})"

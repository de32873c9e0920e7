"""State the delivery engine's consumers share: Redis health and the Redis clock.

- :class:`RedisHealth` turns a stream of failures and successes into *episodes*: one log line
  and one ``on_redis_error`` call when Redis becomes unreachable, one log line and one
  ``on_redis_recovered`` call when it answers again, however many retries happened in between
  (each failed call is still counted, and reported to ``on_redis_failure``).
  An exhausted connection pool is backpressure, not an outage: it opens no episode, only a
  rate-limited "pool saturated" warning; the operation backs off and retries as after an error.
- deletes and releases (group commits, retries after an outage) are in
  :mod:`wsmq.engine.settle`;
- :class:`RedisClock` estimates Redis ``TIME`` locally: scores are Redis epoch ms, and the
  consumer's timer must fire when Redis, not this host, reaches a score.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions as rex

from wsmq.backoff import Backoff
from wsmq.connections import is_pool_exhausted
from wsmq.engine.ports import QueueStore

__all__ = [
    "POOL_LOG_EVERY",
    "TRANSIENT_ERRORS",
    "RedisClock",
    "RedisHealth",
]

log = logging.getLogger("wsmq.engine")

T = TypeVar("T")
A = TypeVar("A")

#: Seconds between two "pool saturated" warnings; the occurrences in between are counted.
POOL_LOG_EVERY = 60.0

#: Errors after which a retry can succeed: connection lost or refused, timeouts, a server still
#: loading its AOF (``BusyLoadingError`` is a ``ConnectionError``), a failover in progress, and
#: an exhausted pool (``MaxConnectionsError`` is a ``ConnectionError`` too; see
#: :func:`is_pool_exhausted`: :meth:`RedisHealth.failed` does not count it as an outage).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ReadOnlyError,
    rex.ClusterDownError,
    rex.TryAgainError,
    OSError,  # includes TimeoutError
)


class RedisHealth:
    """Track Redis outages as episodes; call the hooks once per episode.

    :meth:`failed` with a pool-exhaustion error (see :func:`is_pool_exhausted`) goes to
    :meth:`pool_busy` instead: Redis answers, this node just has more commands in flight than
    connections, so readiness, the outage hooks and the outage log stay untouched.
    """

    def __init__(
        self,
        on_error: Callable[[BaseException], object] | None = None,
        on_recovered: Callable[[float], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_failure: Callable[[BaseException], object] | None = None,
    ) -> None:
        self.on_error = on_error
        self.on_recovered = on_recovered
        #: Called for every failed call (an episode has many: each retry of each consumer).
        self.on_failure = on_failure
        self._monotonic = monotonic
        self.down_since: float | None = None
        self.episodes = 0
        #: Failed calls (pool exhaustion excluded), over all episodes.
        self.failures = 0
        #: Operations that found no free pooled connection in time (and were retried).
        self.pool_exhausted = 0
        self._pool_logged_at: float | None = None
        self._pool_unlogged = 0

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException) -> None:
        if is_pool_exhausted(exc):
            self.pool_busy(exc)
            return
        self.failures += 1
        _call_hook(self.on_failure, exc)
        if self.down_since is not None:
            return
        self.down_since = self._monotonic()
        self.episodes += 1
        log.warning(
            "Redis unreachable (%s: %s); consumers back off and retry, sockets stay open",
            type(exc).__name__,
            exc,
            extra={"event": "redis_down"},
        )
        _call_hook(self.on_error, exc)

    def pool_busy(self, exc: BaseException) -> None:
        """Count one pool exhaustion; warn at most once per :data:`POOL_LOG_EVERY` seconds."""
        self.pool_exhausted += 1
        self._pool_unlogged += 1
        now = self._monotonic()
        if self._pool_logged_at is not None and now - self._pool_logged_at < POOL_LOG_EVERY:
            return
        self._pool_logged_at = now
        count, self._pool_unlogged = self._pool_unlogged, 0
        log.warning(
            "Redis connection pool saturated: %d operation(s) since the last report found no "
            "free connection in time (%s); they wait and retry, Redis is not considered down. "
            "Raise the redis_pool_size setting if this persists "
            "(metric wsmq_redis_pool_exhausted_total)",
            count,
            exc,
            extra={"event": "redis_pool_saturated"},
        )

    async def retry_when_pool_busy(
        self, op: Callable[[], Awaitable[T]], *, patience: float = 60.0
    ) -> T:
        """``await op()``, retried with backoff while it fails only for want of a pooled
        connection (each time counted by :meth:`pool_busy`), for up to ``patience`` seconds;
        any other error, or the last pool error, is raised."""
        deadline = self._monotonic() + patience
        backoff = Backoff(base=0.05, cap=1.0)
        while True:
            try:
                return await op()
            except Exception as exc:
                delay = backoff.next()
                if not is_pool_exhausted(exc) or self._monotonic() + delay > deadline:
                    raise
                self.pool_busy(exc)
            await asyncio.sleep(delay)

    def ok(self) -> None:
        if self.down_since is None:
            return
        downtime = self._monotonic() - self.down_since
        self.down_since = None
        log.warning(
            "Redis reachable again after %.1f s; delivery resumes",
            downtime,
            extra={"event": "redis_up"},
        )
        _call_hook(self.on_recovered, downtime)


def _call_hook(hook: Callable[[A], object] | None, arg: A) -> None:
    if hook is None:
        return
    try:
        hook(arg)
    except Exception:
        log.exception("delivery engine hook %r raised", hook, extra={"event": "hook_failed"})


class RedisClock:
    """Local estimate of Redis ``TIME`` in epoch ms (offset measured with :meth:`sync`)."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.offset_ms = 0.0
        self.synced_at: float | None = None

    def now_ms(self) -> float:
        return self._wall() * 1000.0 + self.offset_ms

    def due(self, every: float) -> bool:
        return self.synced_at is None or self._monotonic() - self.synced_at >= every

    async def sync(self, queues: QueueStore) -> None:
        """Measure the offset with one ``TIME`` round trip (:meth:`Queues.now_ms`)."""
        before = self._wall()
        redis_ms = await queues.now_ms()
        after = self._wall()
        self.offset_ms = redis_ms - (before + after) / 2 * 1000.0
        self.synced_at = self._monotonic()

"""State the delivery engine's consumers share: Redis health, retries after an outage, clock.

- :class:`RedisHealth` turns a stream of failures and successes into *episodes*: one log line
  and one ``on_redis_error`` call when Redis becomes unreachable, one log line and one
  ``on_redis_recovered`` call when it answers again, however many retries happened in between.
- :class:`PendingOps` remembers deletes (acks, legacy writes) and releases (visibility 0) that
  failed because Redis was down, so they are applied once it is back.
- :class:`RedisClock` estimates Redis ``TIME`` locally: scores are Redis epoch ms, and the
  consumer's timer must fire when Redis, not this host, reaches a score.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import redis.exceptions as rex

from wsmq.queue import errors as _queue_errors
from wsmq.queue.errors import QueueNotFound

if TYPE_CHECKING:
    from wsmq.queue import Queues

__all__ = ["TRANSIENT_ERRORS", "PendingOps", "RedisClock", "RedisHealth", "is_transient"]

log = logging.getLogger("wsmq.delivery")

#: Errors after which a retry can succeed: connection lost or refused, timeouts, a server still
#: loading its AOF (``BusyLoadingError`` is a ``ConnectionError``), a failover in progress.
_QUEUE_CONNECTION_ERROR = getattr(_queue_errors, "QueueConnectionError", None)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.ReadOnlyError,
    rex.ClusterDownError,
    rex.TryAgainError,
    OSError,  # includes TimeoutError
    *((_QUEUE_CONNECTION_ERROR,) if isinstance(_QUEUE_CONNECTION_ERROR, type) else ()),
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


class RedisHealth:
    """Track Redis outages as episodes; call the hooks once per episode."""

    def __init__(
        self,
        on_error: Callable[[BaseException], object] | None = None,
        on_recovered: Callable[[float], object] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_error = on_error
        self.on_recovered = on_recovered
        self._monotonic = monotonic
        self.down_since: float | None = None
        self.episodes = 0

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    def failed(self, exc: BaseException) -> None:
        if self.down_since is not None:
            return
        self.down_since = self._monotonic()
        self.episodes += 1
        log.warning(
            "Redis unreachable (%s: %s); consumers back off and retry, sockets stay open",
            type(exc).__name__,
            exc,
        )
        _call_hook(self.on_error, exc)

    def ok(self) -> None:
        if self.down_since is None:
            return
        downtime = self._monotonic() - self.down_since
        self.down_since = None
        log.warning("Redis reachable again after %.1f s; delivery resumes", downtime)
        _call_hook(self.on_recovered, downtime)


def _call_hook(hook: Callable[[Any], object] | None, arg: object) -> None:
    if hook is None:
        return
    try:
        hook(arg)
    except Exception:
        log.exception("delivery engine hook %r raised", hook)


class PendingOps:
    """Deletes and releases to apply once Redis answers again (per queue, deduplicated)."""

    #: Ids per Redis call when flushing, so one huge backlog does not block Redis.
    CHUNK = 500

    def __init__(self) -> None:
        self.deletes: dict[str, dict[str, None]] = {}
        self.releases: dict[str, dict[str, None]] = {}

    def add_deletes(self, qname: str, ids: Iterable[str]) -> None:
        _add(self.deletes, qname, ids)

    def add_releases(self, qname: str, ids: Iterable[str]) -> None:
        _add(self.releases, qname, ids)

    def count(self) -> int:
        return sum(map(len, self.deletes.values())) + sum(map(len, self.releases.values()))

    def qnames(self) -> list[str]:
        return sorted(set(self.deletes) | set(self.releases))

    async def flush(self, queues: Queues, qname: str, health: RedisHealth) -> None:
        """Apply this queue's pending operations; on failure keep what is left and re-raise."""
        dels = list(self.deletes.pop(qname, {}))
        rels = list(self.releases.pop(qname, {}))
        if not dels and not rels:
            return
        try:
            while dels:
                await queues.delete_messages(qname, dels[: self.CHUNK])
                del dels[: self.CHUNK]
            while rels:
                await queues.change_messages_visibility(qname, rels[: self.CHUNK], 0)
                del rels[: self.CHUNK]
        except QueueNotFound:
            dels, rels = [], []  # the queue was deleted with its messages: nothing to settle
        finally:
            self.add_deletes(qname, dels)
            self.add_releases(qname, rels)
        health.ok()

    async def flush_all(self, queues: Queues, health: RedisHealth) -> None:
        for qname in self.qnames():
            await self.flush(queues, qname, health)


def _add(book: dict[str, dict[str, None]], qname: str, ids: Iterable[str]) -> None:
    new = dict.fromkeys(ids)
    if new:
        book.setdefault(qname, {}).update(new)


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

    async def sync(self, queues: Queues) -> None:
        """Measure the offset with one ``TIME`` (wsmq-side helper using ``queues.redis``)."""
        before = self._wall()
        reply: Any = await queues.redis.time()
        after = self._wall()
        sec, usec = int(reply[0]), int(reply[1])
        redis_ms = sec * 1000.0 + usec / 1000.0
        self.offset_ms = redis_ms - (before + after) / 2 * 1000.0
        self.synced_at = self._monotonic()

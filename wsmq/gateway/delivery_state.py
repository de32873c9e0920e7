"""State the delivery engine's consumers share: Redis health, retries after an outage, clock.

- :class:`RedisHealth` turns a stream of failures and successes into *episodes*: one log line
  and one ``on_redis_error`` call when Redis becomes unreachable, one log line and one
  ``on_redis_recovered`` call when it answers again, however many retries happened in between
  (each failed call is still counted, and reported to ``on_redis_failure``).
  An exhausted connection pool is backpressure, not an outage: it opens no episode, only a
  rate-limited "pool saturated" warning; the operation backs off and retries as after an error.
- :class:`PendingOps` remembers deletes (acks, legacy writes) and releases (visibility 0) that
  failed because Redis was down, so they are applied once it is back; an ack waiting for its
  delete waits there too, and is answered only once the delete landed.
- :class:`SettleBatcher` applies deletes (acks, legacy writes) and releases as *group commits*:
  everything queued while one round trip is in flight goes out in the next one, so many acks
  cost one ``delete_messages`` call instead of one each;
- :class:`RedisClock` estimates Redis ``TIME`` locally: scores are Redis epoch ms, and the
  consumer's timer must fire when Redis, not this host, reaches a score.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions as rex

from wsmq.connections import is_pool_exhausted
from wsmq.queue import errors as _queue_errors
from wsmq.queue.errors import QueueNotFound

if TYPE_CHECKING:
    from wsmq.queue import Queues

__all__ = [
    "POOL_LOG_EVERY",
    "TRANSIENT_ERRORS",
    "PendingOps",
    "RedisClock",
    "RedisHealth",
    "SettleBatcher",
    "is_pool_exhausted",
    "is_transient",
]

log = logging.getLogger("wsmq.delivery")

T = TypeVar("T")

#: Seconds between two "pool saturated" warnings; the occurrences in between are counted.
POOL_LOG_EVERY = 60.0

#: Errors after which a retry can succeed: connection lost or refused, timeouts, a server still
#: loading its AOF (``BusyLoadingError`` is a ``ConnectionError``), a failover in progress, and
#: an exhausted pool (``MaxConnectionsError`` is a ``ConnectionError`` too; see
#: :func:`is_pool_exhausted`: :meth:`RedisHealth.failed` does not count it as an outage).
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
        )

    async def retry_when_pool_busy(
        self, op: Callable[[], Awaitable[T]], *, patience: float = 60.0
    ) -> T:
        """``await op()``, retried with backoff while it fails only for want of a pooled
        connection (each time counted by :meth:`pool_busy`), for up to ``patience`` seconds;
        any other error, or the last pool error, is raised."""
        deadline = self._monotonic() + patience
        delay = 0.05
        while True:
            try:
                return await op()
            except Exception as exc:
                if not is_pool_exhausted(exc) or self._monotonic() + delay > deadline:
                    raise
                self.pool_busy(exc)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 1.0)

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
    """Deletes and releases to apply once Redis answers again (per queue, deduplicated).

    ``waiters``: futures of acks whose deletes are pending here; :meth:`flush` resolves them
    once the queue's deletes landed, :meth:`fail_waiters` (shutdown) fails the others.
    """

    #: Ids per Redis call when flushing, so one huge backlog does not block Redis.
    CHUNK = 500

    def __init__(self) -> None:
        self.deletes: dict[str, dict[str, None]] = {}
        self.releases: dict[str, dict[str, None]] = {}
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}

    def add_waiter(self, qname: str, fut: asyncio.Future[None]) -> None:
        """Resolve ``fut`` once the deletes pending for ``qname`` landed."""
        self.waiters.setdefault(qname, []).append(fut)

    def fail_waiters(self, exc: BaseException) -> None:
        """Fail every waiter still pending (shutdown: its delete was not applied)."""
        waiters, self.waiters = self.waiters, {}
        _fail([fut for futs in waiters.values() for fut in futs], exc)

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
        waiters = self.waiters.pop(qname, [])
        if not dels and not rels and not waiters:
            return
        try:
            while dels:
                await queues.delete_messages(qname, dels[: self.CHUNK])
                del dels[: self.CHUNK]
            _resolve(waiters)  # the deletes landed: the acks may be answered
            while rels:
                await queues.change_messages_visibility(qname, rels[: self.CHUNK], 0)
                del rels[: self.CHUNK]
        except QueueNotFound:
            dels, rels = [], []  # the queue was deleted with its messages: nothing to settle
            _resolve(waiters)
        finally:
            self.add_deletes(qname, dels)
            self.add_releases(qname, rels)
            if dels:
                self.waiters.setdefault(qname, []).extend(w for w in waiters if not w.done())
        health.ok()

    async def flush_all(self, queues: Queues, health: RedisHealth) -> None:
        for qname in self.qnames():
            await self.flush(queues, qname, health)


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)


def _fail(waiters: Iterable[asyncio.Future[None]], exc: BaseException) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # retrieved: the ack may be gone already


def _add(book: dict[str, dict[str, None]], qname: str, ids: Iterable[str]) -> None:
    new = dict.fromkeys(ids)
    if new:
        book.setdefault(qname, {}).update(new)


class SettleBatcher:
    """Group commit of deletes and releases, per queue.

    ``delete``/``release`` only queue ids; one flush task per queue applies what is queued with
    one ``delete_messages`` and one ``change_messages_visibility`` (vt 0) round trip, then takes
    whatever was queued meanwhile, and so on. Ids queued within one event-loop iteration (acks
    parsed from one TCP read, a batch of legacy writes) therefore share a round trip, and under
    load the groups grow by themselves; an isolated ack still goes out at once (no timer).

    Failures: a Redis outage moves the ids to :class:`PendingOps`, applied when Redis is back;
    a waiter (an ack) moves there with them and is resolved only once its delete landed, so an
    ``acked`` reply always means deleted. A deleted queue took its messages with it.
    """

    def __init__(
        self,
        queues: Queues,
        health: RedisHealth,
        pending: PendingOps,
        on_released: Callable[[str], None] = lambda qname: None,
    ) -> None:
        self._queues = queues
        self._on_released = on_released
        self._health = health
        self._pending = pending
        self._deletes: dict[str, list[str]] = {}
        self._releases: dict[str, list[str]] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def delete(self, qname: str, msg_id: str) -> None:
        """Queue one delete (no waiting)."""
        ids = self._deletes.get(qname)
        if ids is None:
            self._deletes[qname] = [msg_id]
            self._kick(qname)
        else:
            ids.append(msg_id)

    def release(self, qname: str, ids: Iterable[str]) -> None:
        """Queue releases (visibility 0; no waiting)."""
        self._releases.setdefault(qname, []).extend(ids)
        self._kick(qname)

    async def delete_and_wait(self, qname: str, msg_id: str) -> None:
        """Queue one delete and wait for the round trip that carries it (an ack)."""
        fut = self._waiters.get(qname)
        if fut is None:
            fut = self._waiters[qname] = asyncio.get_running_loop().create_future()
        self.delete(qname, msg_id)
        # Shielded: a cancelled ack must not cancel the group's future for the others.
        await asyncio.shield(fut)

    def queued(self) -> int:
        """Ids queued and not yet sent to Redis."""
        return sum(map(len, self._deletes.values())) + sum(map(len, self._releases.values()))

    def _kick(self, qname: str) -> None:
        if qname not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._flush(qname))
            self._tasks[qname] = task

    async def _flush(self, qname: str) -> None:
        try:
            while True:
                dels = self._deletes.pop(qname, [])
                rels = self._releases.pop(qname, [])
                fut = self._waiters.pop(qname, None)
                if not dels and not rels:
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                    return
                try:
                    landed = await self._apply(qname, dels, rels)
                except asyncio.CancelledError:
                    if fut is not None and not fut.done():
                        self._pending.add_waiter(qname, fut)  # its deletes are pending there
                    raise
                except Exception as exc:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                        fut.exception()  # retrieved: no "never retrieved" warning if unawaited
                    else:
                        log.exception("settling messages of queue %s failed", qname)
                else:
                    if fut is not None and not fut.done():
                        if landed:
                            fut.set_result(None)
                        else:  # Redis is down: answered once PendingOps applied the deletes
                            self._pending.add_waiter(qname, fut)
        finally:
            del self._tasks[qname]

    async def _apply(self, qname: str, dels: list[str], rels: list[str]) -> bool:
        """Apply one group; whether its deletes landed (else they wait in PendingOps)."""
        chunk = PendingOps.CHUNK
        try:
            while dels:
                await self._queues.delete_messages(qname, dels[:chunk])
                del dels[:chunk]
            if rels:
                while rels:
                    await self._queues.change_messages_visibility(qname, rels[:chunk], 0)
                    del rels[:chunk]
                self._on_released(qname)  # visible again: a local subscriber may take them
        except QueueNotFound:
            dels.clear()  # deleted meanwhile, messages included: nothing left to settle
            rels.clear()
            return True
        except TRANSIENT_ERRORS as exc:
            self._health.failed(exc)
            return not dels
        finally:
            # Whatever was not applied (outage, cancel) is retried later, deletes first.
            self._pending.add_deletes(qname, dels)
            self._pending.add_releases(qname, rels)
        self._health.ok()
        return True

    def fail_waiters(self, exc: BaseException) -> None:
        """Fail the acks still waiting here (shutdown cut :meth:`close` short)."""
        waiters, self._waiters = self._waiters, {}
        _fail(waiters.values(), exc)

    async def close(self, grace: float) -> None:
        """Let round trips in flight finish (bounded), then hand everything left (waiters
        included) to PendingOps."""
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=grace)
        for qname, ids in self._deletes.items():
            self._pending.add_deletes(qname, ids)
        for qname, ids in self._releases.items():
            self._pending.add_releases(qname, ids)
        self._deletes.clear()
        self._releases.clear()
        for qname, fut in self._waiters.items():
            if not fut.done():  # its deletes are pending now: answered when they land
                self._pending.add_waiter(qname, fut)
        self._waiters.clear()


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

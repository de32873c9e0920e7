"""Bounded Redis connection pools: pool exhaustion is backpressure, not an outage.

Every pool built by :func:`wsmq.connections.redis_from_url` with ``max_connections`` waits for
a free connection, counts the waits (:class:`PoolStats`, :func:`pool_stats`) and, when none
frees up within ``pool_timeout``, raises :class:`PoolExhaustedError`; :func:`is_pool_exhausted`
also recognises what redis-py's own pools raise.  Cluster clients additionally ride out live
resharding (``ASK`` redirects and ``TRYAGAIN``), see :class:`BoundedRedisCluster`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ClusterError, MaxConnectionsError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT

from wsmq._compat.redis_pool import lifo_free_list
from wsmq._compat.redis_write import direct_write
from wsmq.backoff import Backoff
from wsmq.errors import WsmqError

__all__ = [
    "BlockingSentinelConnectionPool",
    "BoundedRedisCluster",
    "PoolExhaustedError",
    "PoolStats",
    "WaitingConnectionPool",
    "is_pool_exhausted",
    "pool_stats",
]


class PoolExhaustedError(WsmqError, MaxConnectionsError, code="pool_exhausted"):
    """No pooled connection became free within ``pool_timeout``: every one was busy.

    Backpressure (more concurrent commands than ``max_connections``), not an outage: nothing
    was sent, so the command can be retried as is.  A ``MaxConnectionsError``, hence also a
    redis-py ``ConnectionError``: code that only knows redis-py's errors still sees one.
    """


@dataclasses.dataclass(eq=False, slots=True)
class PoolStats:
    """Counters of one client's connection pool (exported by the gateway as metrics).

    ``waits``: commands that found all ``size`` connections busy and queued for one;
    ``exhausted``: waits that reached the pool timeout without one (:class:`PoolExhaustedError`).
    """

    size: int
    waits: int = 0
    exhausted: int = 0

    def error(self, timeout: float | None) -> PoolExhaustedError:
        """Count one exhaustion; the error to raise for it."""
        self.exhausted += 1
        return PoolExhaustedError(
            f"no free Redis connection within {timeout} s: all {self.size} (max_connections) busy"
        )


def is_pool_exhausted(exc: BaseException) -> bool:
    """True when ``exc`` says "no free connection in the client's pool", for every client kind.

    - ``MaxConnectionsError``: :class:`PoolExhaustedError` from the pools built here (single
      server, Sentinel, Cluster), redis-py's non-blocking ``ConnectionPool`` and its cluster
      nodes ("Too many connections");
    - a plain ``ConnectionError("No connection available.")``: redis-py's own
      ``BlockingConnectionPool`` (and Sentinel pools built on it) when its wait times out.

    A refused, reset or timed-out connection is none of these: that is an outage.
    """
    if isinstance(exc, MaxConnectionsError):
        return True
    return type(exc) is RedisConnectionError and "No connection available" in str(exc)


class WaitingConnectionPool(ConnectionPool):
    """A ``ConnectionPool`` that waits for a free connection, counts the waits and raises
    :class:`PoolExhaustedError` when none frees up within ``timeout`` seconds.

    redis-py's plain pool raises ``MaxConnectionsError`` at once when ``max_connections`` are
    busy, and its ``BlockingConnectionPool`` raises a plain ``ConnectionError`` when its wait
    times out, indistinguishable by type from a refused connection. Here a semaphore of
    ``max_connections`` slots is taken before redis-py's checkout and given back after its
    release (as :class:`BoundedRedisCluster` bounds commands), so redis-py's pool never sees
    more than that many checkouts.
    """

    def __init__(self, *args: Any, timeout: float | None = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self.stats = PoolStats(self.max_connections)
        self._slots = asyncio.Semaphore(self.max_connections)
        self._holding: set[object] = set()  # connections that hold a slot

    async def get_connection(self, *args: object, **kwargs: object) -> AbstractConnection:
        slots = self._slots
        if slots.locked():
            self.stats.waits += 1
            try:
                async with asyncio.timeout(self.timeout):
                    await slots.acquire()
            except TimeoutError:
                raise self.stats.error(self.timeout) from None
        else:
            await slots.acquire()  # free: returns at once
        try:
            # Typed here: redis-py declares the method untyped.
            checkout: Callable[..., Awaitable[AbstractConnection]] = super().get_connection
            conn = await checkout(*args, **kwargs)
        except BaseException:
            slots.release()
            raise
        self._holding.add(conn)
        return conn

    async def release(self, connection: AbstractConnection) -> None:
        try:
            await super().release(connection)
        finally:
            # Once per checkout: redis-py may finish a cancelled release in the background.
            if connection in self._holding:
                self._holding.discard(connection)
                self._slots.release()


class BlockingSentinelConnectionPool(SentinelConnectionPool, WaitingConnectionPool):
    """Sentinel-managed pool that waits for a free connection (``timeout`` s) instead of
    raising ``MaxConnectionsError`` at once when ``max_connections`` are busy."""


def pool_stats(client: object) -> PoolStats | None:
    """The :class:`PoolStats` of a client built by :func:`redis_from_url` with
    ``max_connections`` (``None`` for any other client)."""
    if isinstance(client, BoundedRedisCluster):
        return client.pool_stats
    stats = getattr(getattr(client, "connection_pool", None), "stats", None)
    return stats if isinstance(stats, PoolStats) else None


class BoundedRedisCluster(RedisCluster):
    """A ``RedisCluster`` whose commands wait for a free slot and ride out live resharding.

    - Bound: redis-py's cluster client raises ``MaxConnectionsError`` as soon as a node has
      ``max_connections`` busy connections, so a burst of concurrent sends would fail.  Here
      at most ``max_connections`` commands are in flight in total (so per node too), the
      others wait up to ``pool_timeout`` seconds (then :class:`PoolExhaustedError`), like the
      blocking pool of a single-server client; :attr:`pool_stats` counts the waits.
    - ``ASK``: redis-py 8 sends ``ASKING`` and then the redirected command as two separate
      checkouts from the target node's free list, which is FIFO: with two or more idle
      connections they land on different connections, the target answers ``MOVED``, the
      source ``ASK`` again, until "TTL exhausted".  The free list of every node reached
      through :meth:`get_node` (the ``ASK`` path) is therefore made LIFO, so the command takes
      the very connection ``ASKING`` was just sent on (no ``await`` in between;
      :mod:`wsmq._compat.redis_pool`).
    - ``TRYAGAIN``: a multi-key command on a migrating slot whose keys are not all on one node
      (a queue script while the queue's keys are split between the two nodes; a script that
      creates a key, such as a send's idempotency marker, until the slot is handed over).
      redis-py retries for about 0.4 s, then gives up with ``ClusterError("TTL exhausted.")``.
      That error only follows redirect and ``TRYAGAIN`` replies, i.e. the command never ran,
      so it is retried here with backoff (not holding a slot) for up to
      :attr:`MIGRATION_PATIENCE` more seconds.
    """

    #: Seconds of extra retries after redis-py gave up on a slot in migration.
    MIGRATION_PATIENCE = 5.0

    def __init__(self, *args: Any, pool_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # redis-py's cluster client fixes its connection class: give the nodes it knows and
        # those it discovers later the direct command write (wsmq._compat.redis_write).
        manager = self.nodes_manager
        manager.connection_kwargs["connection_class"] = direct_write(
            manager.connection_kwargs["connection_class"]
        )
        for node in manager.startup_nodes.values():
            node.connection_class = direct_write(node.connection_class)
        size = int(kwargs.get("max_connections", 100))
        self._bound = asyncio.Semaphore(size)
        self._pool_timeout = pool_timeout
        self.pool_stats = PoolStats(size)

    async def execute_command(self, *args: EncodableT, **kwargs: object) -> object:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.MIGRATION_PATIENCE
        backoff: Backoff | None = None  # built on the first retry only: commands rarely retry
        while True:
            try:
                return await self._bounded(args, kwargs)
            except ClusterError as exc:
                # Exact type: ClusterDownError and friends are subclasses with other meanings.
                if type(exc) is not ClusterError or "TTL exhausted" not in str(exc):
                    raise
                if backoff is None:
                    backoff = Backoff(base=0.05, cap=0.5)
                delay = backoff.next()
                if loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)  # without holding a slot: other queues go on

    async def _bounded(self, args: tuple[EncodableT, ...], kwargs: dict[str, object]) -> object:
        if self._bound.locked():
            self.pool_stats.waits += 1
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._bound.acquire()
        except TimeoutError:
            raise self.pool_stats.error(self._pool_timeout) from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._bound.release()

    def get_node(
        self, host: str | None = None, port: int | None = None, node_name: str | None = None
    ) -> ClusterNode | None:
        node = super().get_node(host, port, node_name)
        lifo_free_list(node)
        return node

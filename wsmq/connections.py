"""One place that turns a Redis URL into a ``redis.asyncio`` client: standalone, Sentinel, Cluster.

URL forms (user name and password percent-encoded; see ``docs/scaleout.md``):

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://...`` (TLS)
- ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]``
  (``rediss+sentinel://`` for TLS to the data nodes and the sentinels)
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]`` (``rediss+cluster://``),
  or any ``redis://`` URL with ``cluster=True``

:func:`parse_redis_url` (pure, from :mod:`wsmq.redis_url`) gives a :class:`RedisTarget`;
:func:`redis_from_url` builds the client with production defaults: a bounded connect
timeout, no read timeout on blocking and pub/sub connections (a quiet subscription is not an
error), keepalive, health checks, and a jittered exponential ``Retry`` on connection errors
so a failover is ridden out.

Pool exhaustion is backpressure, not an outage: every pool built here waits for a free
connection, counts the waits (:class:`PoolStats`, :func:`pool_stats`) and, when none frees up
within ``pool_timeout``, raises :class:`PoolExhaustedError`; :func:`is_pool_exhausted` also
recognises what redis-py's own pools raise.  Cluster clients additionally ride out live
resharding (``ASK`` redirects and ``TRYAGAIN``), see :class:`BoundedRedisCluster`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeAlias

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ClusterError, MaxConnectionsError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT

from wsmq._compat.redis_pool import lifo_free_list
from wsmq._compat.redis_write import direct_write
from wsmq.backoff import Backoff
from wsmq.errors import WsmqError
from wsmq.redis_url import RedisTarget, RedisUrlError, parse_redis_url

__all__ = [
    "AnyRedis",
    "BlockingSentinelConnectionPool",
    "BoundedRedisCluster",
    "PoolExhaustedError",
    "PoolStats",
    "RedisTarget",
    "RedisUrlError",
    "Role",
    "SentinelRedis",
    "WaitingConnectionPool",
    "broadcast_pubsub_client",
    "is_pool_exhausted",
    "parse_redis_url",
    "pool_stats",
    "redis_from_target",
    "redis_from_url",
    "redis_retry",
]

Role = Literal["command", "blocking", "pubsub"]
AnyRedis: TypeAlias = Redis | RedisCluster
"""What :func:`redis_from_url` returns: a cluster client only for cluster targets."""


def redis_retry(retries: int = 3, *, base: float = 0.05, cap: float = 1.0) -> Retry:
    """wsmq's one retry policy for redis-py clients: ``retries`` extra attempts on connection and
    timeout errors, after jittered exponential pauses (``base`` doubling up to ``cap`` seconds).

    ``retries=0`` never retries: for connections whose owner reconnects itself.
    """
    if retries == 0:
        return Retry(NoBackoff(), 0)
    return Retry(ExponentialWithJitterBackoff(cap=cap, base=base), retries)


def _tls_kwargs(options: Mapping[str, object]) -> dict[str, object]:
    keys = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
    return {k: options[k] for k in keys if k in options}


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


class SentinelRedis(Redis):
    """A master client from Sentinel that also closes its sentinel connections on ``aclose``."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None and (
            close_connection_pool
            or (close_connection_pool is None and self.auto_close_connection_pool)
        ):
            for sentinel in manager.sentinels:
                await sentinel.aclose()


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


def redis_from_url(
    url: str | RedisTarget,
    *,
    role: Role = "command",
    cluster: bool = False,
    retry: Retry | int | None = None,
    connect_timeout: float = 5.0,
    socket_timeout: float | Literal["default"] | None = "default",
    health_check_interval: float = 15.0,
    max_connections: int | None = None,
    pool_timeout: float = 10.0,
    **kwargs: object,
) -> AnyRedis:
    """Build a ``redis.asyncio`` client for ``url`` or a parsed target (lazy: nothing connects
    until first use). Raises :class:`RedisUrlError` for a bad URL.

    - ``cluster=True`` treats a ``redis://`` URL as a cluster (a parsed target says its kind).
    - ``role="command"``: request/response use, ``socket_timeout`` 10 s so a dead peer is
      noticed; ``"blocking"``/``"pubsub"``: no read timeout (blocking reads and quiet
      subscriptions are normal), liveness comes from keepalive and health checks.
    - ``retry``: a redis-py ``Retry``, or a number of retries for :func:`redis_retry`
      (default 3).  ``connect_timeout`` bounds each connection attempt.
    - ``max_connections``: a pool that waits up to ``pool_timeout`` for a free connection
      instead of failing at once, then raises :class:`PoolExhaustedError` (for Cluster: at
      most that many commands in flight in total, see :class:`BoundedRedisCluster`); its
      counters: :func:`pool_stats`.
    - Remaining ``kwargs`` go to the redis-py connection (``decode_responses=True``, ...).
      Options from the URL query string win over the defaults above but not over ``kwargs``.

    Returns ``Redis`` (``SentinelRedis`` for Sentinel) or ``RedisCluster`` for cluster targets.
    """
    target = url if isinstance(url, RedisTarget) else parse_redis_url(url, cluster=cluster)
    if role not in ("command", "blocking", "pubsub"):
        raise ValueError(f"role must be command, blocking or pubsub, not {role!r}")
    if socket_timeout == "default":
        socket_timeout = 10.0 if role == "command" else None
    if retry is None or isinstance(retry, int):
        retry = redis_retry(3 if retry is None else retry)
    options = dict(target.options)
    sentinel_username = options.pop("sentinel_username", None)
    sentinel_password = options.pop("sentinel_password", None)
    max_connections = options.pop("max_connections", max_connections)
    conn: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": health_check_interval,
        "retry": retry,
        "username": target.username,
        "password": target.password,
    }
    tls = _tls_kwargs(options)
    conn.update({k: v for k, v in options.items() if k not in tls})
    conn.update(kwargs)

    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        conn.pop("db", None)
        if max_connections is not None:
            conn["max_connections"] = max_connections
        if target.tls:
            conn.update(ssl=True, **tls)
        return BoundedRedisCluster(startup_nodes=nodes, pool_timeout=pool_timeout, **conn)

    conn["db"] = target.db
    if target.kind == "sentinel":
        assert target.service_name is not None
        sentinel_kwargs: dict[str, object] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            "socket_keepalive": True,
            "retry": redis_retry(1),
            "username": sentinel_username,
            "password": sentinel_password,
        }
        if target.tls:
            conn.update(ssl=True, **tls)
            sentinel_kwargs.update(ssl=True, **tls)
        managed = SentinelManagedSSLConnection if target.tls else SentinelManagedConnection
        conn["connection_class"] = direct_write(managed)
        pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
        if max_connections is not None:
            conn.update(max_connections=max_connections, timeout=pool_timeout)
            pool_class = BlockingSentinelConnectionPool
        # Typed here: redis-py 8.1 declares Sentinel's constructor untyped.
        make_sentinel: Callable[..., Sentinel] = Sentinel
        manager = make_sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)
        # check_connection: PING right after connecting, so a stale address is noticed at once.
        client: SentinelRedis = manager.master_for(
            target.service_name,
            redis_class=SentinelRedis,
            connection_pool_class=pool_class,
            check_connection=True,
            **conn,
        )
        return client

    if target.kind == "unix":
        conn.update(connection_class=direct_write(UnixDomainSocketConnection), path=target.path)
        conn.pop("socket_keepalive", None)
    else:
        host, port = target.hosts[0]
        conn.update(host=host, port=port)
        conn["connection_class"] = direct_write(SSLConnection if target.tls else Connection)
        if target.tls:
            conn.update(tls)
    pool: ConnectionPool
    if max_connections is not None:
        pool = WaitingConnectionPool(max_connections=max_connections, timeout=pool_timeout, **conn)
    else:
        pool = ConnectionPool(**conn)
    return Redis.from_pool(pool)


#: :func:`redis_from_url` for a parsed :class:`RedisTarget` (one function serves both).
redis_from_target = redis_from_url


async def broadcast_pubsub_client(url: str, **kwargs: Any) -> Redis:
    """A connected client for classic (not sharded) ``SUBSCRIBE``, e.g. a cluster-wide event bus.

    Redis Cluster forwards classic ``PUBLISH`` to every node, so for a cluster target this is a
    plain client to the first reachable startup node; otherwise it is
    ``redis_from_url(url, role="pubsub")``.  ``kwargs`` go to :func:`redis_from_url`.  Raises
    ``redis.exceptions.ConnectionError`` when no node answers.
    """
    target = parse_redis_url(url, cluster=bool(kwargs.pop("cluster", False)))
    if target.kind != "cluster":
        client = redis_from_url(url, role="pubsub", **kwargs)
        assert isinstance(client, Redis)
        return client
    last: Exception | None = None
    for host, port in target.hosts:
        node = dataclasses.replace(target, kind="standalone", hosts=((host, port),))
        client = redis_from_target(node, role="pubsub", **kwargs)
        assert isinstance(client, Redis)
        try:
            await client.ping()
        except (RedisConnectionError, OSError) as exc:
            last = exc
            await client.aclose()
            continue
        return client
    raise RedisConnectionError(f"no cluster node reachable: {last}")

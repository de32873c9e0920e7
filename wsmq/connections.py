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

With ``max_connections`` the pools wait for a free connection (backpressure, not an outage)
and cluster clients ride out live resharding: :mod:`wsmq.redis_pools` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
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
from redis.exceptions import ConnectionError as RedisConnectionError

from wsmq._compat.redis_write import direct_write
from wsmq.redis_pools import (
    BlockingSentinelConnectionPool,
    BoundedRedisCluster,
    PoolExhaustedError,
    PoolStats,
    WaitingConnectionPool,
    is_pool_exhausted,
    pool_stats,
)
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
    from_url = options.pop("max_connections", None)  # an int: parse_redis_url converts it
    if from_url is not None:
        max_connections = int(from_url)
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

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
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Literal, TypeAlias

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from .redis_url import RedisTarget, RedisUrlError, parse_redis_url

__all__ = [
    "AnyRedis",
    "BlockingSentinelConnectionPool",
    "BoundedRedisCluster",
    "RedisTarget",
    "RedisUrlError",
    "Role",
    "SentinelRedis",
    "broadcast_pubsub_client",
    "default_retry",
    "parse_redis_url",
    "redis_from_target",
    "redis_from_url",
]

Role = Literal["command", "blocking", "pubsub"]
AnyRedis: TypeAlias = Redis | RedisCluster
"""What :func:`redis_from_url` returns: a cluster client only for cluster targets."""


def default_retry(retries: int = 3, *, base: float = 0.05, cap: float = 1.0) -> Retry:
    """Jittered exponential backoff on connection/timeout errors (``retries`` extra attempts)."""
    return Retry(ExponentialWithJitterBackoff(cap=cap, base=base), retries)


def _tls_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    keys = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
    return {k: options[k] for k in keys if k in options}


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel-managed pool that waits for a free connection (``timeout`` s) instead of
    raising ``MaxConnectionsError`` when ``max_connections`` are busy."""


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
    """A ``RedisCluster`` whose commands wait for a free slot instead of failing.

    redis-py's cluster client raises ``MaxConnectionsError`` as soon as a node has
    ``max_connections`` busy connections; a burst of concurrent sends would fail.  Here at most
    ``max_connections`` commands are in flight in total (so per node too) and the others wait
    up to ``pool_timeout`` seconds, like the blocking pool of a single-server client.
    """

    def __init__(self, *args: Any, pool_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bound = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))
        self._pool_timeout = pool_timeout

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(self._pool_timeout):
                await self._bound.acquire()
        except TimeoutError:
            raise MaxConnectionsError(f"no free connection within {self._pool_timeout}s") from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._bound.release()


def redis_from_url(
    url: str,
    *,
    role: Role = "command",
    cluster: bool = False,
    retry: Retry | int | None = None,
    connect_timeout: float = 5.0,
    socket_timeout: float | Literal["default"] | None = "default",
    health_check_interval: float = 15.0,
    max_connections: int | None = None,
    pool_timeout: float = 10.0,
    **kwargs: Any,
) -> AnyRedis:
    """Build a ``redis.asyncio`` client for ``url`` (lazy: nothing connects until first use).

    ``cluster=True`` treats a ``redis://`` URL as a cluster; the other keywords are described
    in :func:`redis_from_target`.  Raises :class:`RedisUrlError` for a bad URL.
    """
    return redis_from_target(
        parse_redis_url(url, cluster=cluster),
        role=role,
        retry=retry,
        connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        health_check_interval=health_check_interval,
        max_connections=max_connections,
        pool_timeout=pool_timeout,
        **kwargs,
    )


def redis_from_target(
    target: RedisTarget,
    *,
    role: Role = "command",
    retry: Retry | int | None = None,
    connect_timeout: float = 5.0,
    socket_timeout: float | Literal["default"] | None = "default",
    health_check_interval: float = 15.0,
    max_connections: int | None = None,
    pool_timeout: float = 10.0,
    **kwargs: Any,
) -> AnyRedis:
    """Build a ``redis.asyncio`` client for a parsed target (lazy: no I/O).

    - ``role="command"``: request/response use, ``socket_timeout`` 10 s so a dead peer is
      noticed; ``"blocking"``/``"pubsub"``: no read timeout (blocking reads and quiet
      subscriptions are normal), liveness comes from keepalive and health checks.
    - ``retry``: a redis-py ``Retry``, or a number of retries for :func:`default_retry`
      (default 3).  ``connect_timeout`` bounds each connection attempt.
    - ``max_connections``: a pool that waits up to ``pool_timeout`` for a free connection
      instead of failing (for Cluster: at most that many commands in flight in total, see
      :class:`BoundedRedisCluster`).
    - Remaining ``kwargs`` go to the redis-py connection (``decode_responses=True``, ...).
      Options from the URL query string win over the defaults above but not over ``kwargs``.

    Returns ``Redis`` (``SentinelRedis`` for Sentinel) or ``RedisCluster`` for cluster targets.
    """
    if role not in ("command", "blocking", "pubsub"):
        raise ValueError(f"role must be command, blocking or pubsub, not {role!r}")
    if socket_timeout == "default":
        socket_timeout = 10.0 if role == "command" else None
    if retry is None or isinstance(retry, int):
        retry = default_retry(3 if retry is None else retry)
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
        sentinel_kwargs: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": connect_timeout,
            "socket_keepalive": True,
            "retry": default_retry(1),
            "username": sentinel_username,
            "password": sentinel_password,
        }
        if target.tls:
            conn.update(ssl=True, **tls)
            sentinel_kwargs.update(ssl=True, **tls)
        pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
        if max_connections is not None:
            conn.update(max_connections=max_connections, timeout=pool_timeout)
            pool_class = BlockingSentinelConnectionPool
        manager = Sentinel(list(target.hosts), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
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
        conn.update(connection_class=UnixDomainSocketConnection, path=target.path)
        conn.pop("socket_keepalive", None)
    else:
        host, port = target.hosts[0]
        conn.update(host=host, port=port)
        conn["connection_class"] = SSLConnection if target.tls else Connection
        if target.tls:
            conn.update(tls)
    pool: ConnectionPool
    if max_connections is not None:
        pool = BlockingConnectionPool(max_connections=max_connections, timeout=pool_timeout, **conn)
    else:
        pool = ConnectionPool(**conn)
    return Redis.from_pool(pool)


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

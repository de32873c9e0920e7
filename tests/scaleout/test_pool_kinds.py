"""What an exhausted connection pool raises, per client kind, on real servers (redis-py 8).

- single server: redis-py's ``BlockingConnectionPool`` raises a plain
  ``ConnectionError("No connection available.")`` when its wait times out, its
  ``ConnectionPool`` ``MaxConnectionsError("Too many connections")`` at once;
- Sentinel: ``MaxConnectionsError`` at once from redis-py's ``SentinelConnectionPool`` (a
  ``ConnectionPool``);
- Cluster: ``MaxConnectionsError`` from a node's pool, at once (redis-py has no waiting pool);
- every client built by ``wsmq.connections`` with ``max_connections`` waits ``pool_timeout``
  and then raises ``PoolExhaustedError`` (a ``MaxConnectionsError``).

All of them are pool exhaustion for ``is_pool_exhausted``; a refused connection is not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aredis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from wsmq.connections import (
    AnyRedis,
    BoundedRedisCluster,
    PoolExhaustedError,
    is_pool_exhausted,
    pool_stats,
    redis_from_url,
)
from wsmq.redis_url import parse_redis_url
from wsmq.testing.redisproc import free_port


def tiny(url: str, **kwargs: Any) -> AnyRedis:
    """A wsmq client with a one-connection pool that waits 20 ms for it."""
    return redis_from_url(url, max_connections=1, pool_timeout=0.02, **kwargs)


async def pool_error(client: aredis.Redis) -> BaseException:
    """Hold the pool's one connection; what does the next command raise?"""
    held = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        async with asyncio.timeout(5):
            with pytest.raises(rex.ConnectionError) as info:
                await client.ping()
    finally:
        await client.connection_pool.release(held)
    assert await client.ping()  # the pool works again once the connection is back
    return info.value


async def test_single_server(redis_url: str) -> None:
    own = aredis.Redis.from_url(redis_url, max_connections=1)  # redis-py's ConnectionPool
    blocking = aredis.Redis(
        connection_pool=aredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=1, timeout=0.02
        )
    )
    ours = tiny(redis_url)
    assert isinstance(ours, aredis.Redis)
    try:
        exc = await pool_error(own)
        assert type(exc) is rex.MaxConnectionsError and is_pool_exhausted(exc)
        exc = await pool_error(blocking)
        assert type(exc) is rex.ConnectionError and str(exc) == "No connection available."
        assert is_pool_exhausted(exc)
        exc = await pool_error(ours)
        assert isinstance(exc, PoolExhaustedError) and is_pool_exhausted(exc)
        stats = pool_stats(ours)
        assert stats is not None and (stats.size, stats.waits, stats.exhausted) == (1, 1, 1)
    finally:
        for client in (own, blocking, ours):
            await client.aclose()


async def test_refused_connection_is_an_outage_not_pool_exhaustion() -> None:
    client = tiny(f"redis://127.0.0.1:{free_port()}/0", retry=0)
    try:
        async with asyncio.timeout(10):
            with pytest.raises(rex.ConnectionError) as info:
                await client.ping()
        assert not is_pool_exhausted(info.value)
    finally:
        await client.aclose()


async def test_sentinel(sentinel_url: str) -> None:
    target = parse_redis_url(sentinel_url)
    assert target.service_name is not None
    manager = Sentinel(list(target.hosts))  # type: ignore[no-untyped-call, unused-ignore]
    own = manager.master_for(target.service_name, max_connections=1)
    ours = tiny(sentinel_url)
    assert isinstance(ours, aredis.Redis)
    try:
        exc = await pool_error(own)
        assert type(exc) is rex.MaxConnectionsError and is_pool_exhausted(exc)
        exc = await pool_error(ours)
        assert isinstance(exc, PoolExhaustedError) and is_pool_exhausted(exc)
        stats = pool_stats(ours)
        assert stats is not None and stats.exhausted == 1
    finally:
        await own.aclose()
        await ours.aclose()
        for sentinel in manager.sentinels:
            await sentinel.aclose()


async def test_cluster(cluster_url: str) -> None:
    hosts = parse_redis_url(cluster_url, cluster=True).hosts
    own = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in hosts], max_connections=1)
    ours = tiny(cluster_url)
    assert isinstance(ours, BoundedRedisCluster)
    try:
        async with asyncio.timeout(10):
            for client in (own, ours):
                await client.initialize()
                # Tasks start in order: the blocking read takes the one connection (slot)
                # before the GET of a key in the same slot asks for it.
                blocked, get = await asyncio.gather(
                    client.blpop(["{pool}:list"], timeout=0.5),
                    client.get("{pool}:key"),
                    return_exceptions=True,
                )
                assert blocked is None
                assert isinstance(get, rex.MaxConnectionsError) and is_pool_exhausted(get)
                assert isinstance(get, PoolExhaustedError) is (client is ours)
                assert await client.get("{pool}:key") is None  # free again
        stats = pool_stats(ours)
        assert stats is not None and (stats.waits, stats.exhausted) == (1, 1)
    finally:
        await own.aclose()
        await ours.aclose()

"""WaitingConnectionPool (a semaphore-bounded plain pool): checkout safety on a real server."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from redis.asyncio import Redis

from wsmq.connections import WaitingConnectionPool, redis_from_url


@pytest.fixture
async def client(redis_url: str) -> Redis:
    r = redis_from_url(redis_url, max_connections=4, decode_responses=True)
    assert isinstance(r, Redis) and isinstance(r.connection_pool, WaitingConnectionPool)
    return r


async def test_sequential_commands_reuse_one_connection(client: Redis) -> None:
    pool = client.connection_pool
    try:
        for i in range(50):
            await client.set(f"k{i}", i)
        assert len(pool._available_connections) == 1
        assert not pool._in_use_connections
        assert await client.get("k49") == "49"
    finally:
        await client.aclose()


async def test_a_cancelled_command_never_leaves_its_reply_to_the_next_one(client: Redis) -> None:
    try:
        await client.set("a", "A")
        for _ in range(5):
            slow = asyncio.ensure_future(client.blpop(["empty"], timeout=0.2))
            await asyncio.sleep(0.05)  # sent, reply pending
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow
            # The next command on the pool gets its own reply, not the late nil.
            async with asyncio.timeout(5):
                assert await client.get("a") == "A"
                assert await client.incr("n") >= 1
    finally:
        await client.aclose()


async def test_an_idle_connection_killed_by_the_server_is_replaced(
    client: Redis, redis_url: str
) -> None:
    admin = Redis.from_url(redis_url)
    try:
        await client.set("x", "1")  # one idle connection in the pool now
        killed = await admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        async with asyncio.timeout(5):
            assert await client.get("x") == "1"  # reconnected transparently
    finally:
        await admin.aclose()
        await client.aclose()

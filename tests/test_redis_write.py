"""Direct command writes (wsmq._compat.redis_write): no task per command, bounded waits."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsmq._compat.redis_write import direct_write
from wsmq.connections import redis_from_url
from wsmq.testing.redisproc import RedisProcess


class CountingWaitFor:
    """Counts ``asyncio.wait_for`` calls (redis-py 8 wraps each write of a command in one)."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = asyncio.wait_for

    async def __call__(self, fut: Any, timeout: float | None) -> Any:
        self.calls += 1
        return await self.real(fut, timeout)


async def test_commands_are_written_without_a_task_each(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis_from_url(redis_url)  # role "command": a socket_timeout is set
    assert isinstance(client, Redis)
    try:
        assert await client.ping()  # connected
        counting = CountingWaitFor()
        monkeypatch.setattr(asyncio, "wait_for", counting)
        for i in range(100):
            await client.set(f"k{i}", "v")
        assert await client.get("k99") == b"v"
        # If this fails after a redis-py upgrade, every command pays a task again: check that
        # wsmq._compat.redis_write still overrides the method redis-py sends through.
        assert counting.calls == 0
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
async def test_cluster_and_sentinel_clients_write_directly(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    client = redis_from_url(url)
    try:
        keys = [f"{{k{i}}}" for i in range(30)]  # spread over the cluster's masters
        for key in keys:
            await client.set(key, "v")  # connect everything first
        counting = CountingWaitFor()
        monkeypatch.setattr(asyncio, "wait_for", counting)
        for key in keys:
            assert await client.get(key) == b"v"
        assert counting.calls == 0
    finally:
        await client.aclose()


def test_one_subclass_per_connection_class() -> None:
    from redis.asyncio.connection import Connection

    fast = direct_write(Connection)
    assert direct_write(Connection) is fast and direct_write(fast) is fast
    assert issubclass(fast, Connection)


async def test_a_large_write_still_completes(redis_url: str) -> None:
    client = redis_from_url(redis_url)
    assert isinstance(client, Redis)
    try:
        value = b"x" * (24 * 1024 * 1024)  # far more than the socket buffers take at once
        assert await client.set("big", value)
        assert await client.strlen("big") == len(value)
    finally:
        await client.aclose()


async def test_a_write_that_cannot_drain_times_out(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    redis = redis_factory()
    client = redis_from_url(redis.url, socket_timeout=1.0)
    assert isinstance(client, Redis)
    try:
        assert await client.ping()
        assert redis.pid is not None
        os.kill(redis.pid, signal.SIGSTOP)  # reads nothing: the kernel buffers fill up
        try:
            with pytest.raises((RedisTimeoutError, ConnectionError, OSError)):
                async with asyncio.timeout(30):  # retries included; a hang fails here
                    await client.set("big", b"x" * (64 * 1024 * 1024))
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        assert await client.ping()  # reconnects once Redis answers again
    finally:
        await client.aclose()

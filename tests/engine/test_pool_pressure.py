"""An exhausted Redis connection pool is backpressure, not an outage (issue #7): the engine.

:class:`RedisHealth` alone; then the delivery engine on a real private Redis with a
one-connection pool whose only connection the test holds, so every command of the engine finds
the pool exhausted until it is let go.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
import redis.exceptions as rex
from redis.asyncio import Redis

from wsmq.connections import PoolExhaustedError, pool_stats
from wsmq.engine.delivery import DeliveryEngine
from wsmq.engine.health import POOL_LOG_EVERY, RedisHealth
from wsmq.queue import Message, Queues
from wsmq.realtime.listener import RealtimeListener

NS = "rsmq"
OUTAGE_LOG = "Redis unreachable"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pool_exhaustion_opens_no_episode_and_warns_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wsmq.engine")
    errors: list[BaseException] = []
    clock = Clock()
    health = RedisHealth(on_error=errors.append, monotonic=clock)
    for _ in range(3):
        health.failed(PoolExhaustedError("no free Redis connection within 10 s: all 1 busy"))
    assert health.healthy and health.episodes == 0 and errors == []
    assert health.pool_exhausted == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # rate-limited
    assert "pool saturated" in warnings[0] and "redis_pool_size" in warnings[0]
    assert OUTAGE_LOG not in caplog.text

    clock.now += POOL_LOG_EVERY - 1
    health.failed(rex.ConnectionError("No connection available."))
    assert len(caplog.records) == 1
    clock.now += 1
    health.failed(rex.MaxConnectionsError("Too many connections"))
    assert len(caplog.records) == 2
    # The ones not reported (two after the first warning, one in the quiet minute) count in.
    assert "4 operation(s) since the last report" in caplog.records[-1].getMessage()

    # A real outage is still one, and only one, episode.
    refused = rex.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    health.failed(refused)
    health.failed(refused)
    assert not health.healthy and health.episodes == 1 and errors == [refused]
    assert OUTAGE_LOG in caplog.text


async def test_retry_when_pool_busy_retries_only_pool_errors() -> None:
    health = RedisHealth()
    calls: list[int] = []

    async def busy_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise PoolExhaustedError("busy")
        return "done"

    async with asyncio.timeout(5):
        assert await health.retry_when_pool_busy(busy_twice) == "done"
    assert len(calls) == 3 and health.pool_exhausted == 2 and health.healthy

    async def refused() -> None:
        raise rex.ConnectionError("Connection refused")

    with pytest.raises(rex.ConnectionError, match="refused"):
        await health.retry_when_pool_busy(refused)

    async def always_busy() -> None:
        raise PoolExhaustedError("busy")

    async with asyncio.timeout(5):
        with pytest.raises(PoolExhaustedError):
            await health.retry_when_pool_busy(always_busy, patience=0.2)


class Sink:
    """A v1 subscriber that records what it gets (window 100)."""

    ack_mode = True

    def __init__(self) -> None:
        self.got: list[Message] = []
        self._arrived = asyncio.Condition()

    def window(self) -> int:
        return 100 - len(self.got)

    async def deliver(self, msg: Message) -> bool:
        self.got.append(msg)
        async with self._arrived:
            self._arrived.notify_all()
        return True

    async def wait_for(self, n: int) -> list[Message]:
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.got) >= n)
        return self.got


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Re-check a condition no event exists for (pool counters, Redis state), bounded."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if result if isinstance(result, bool) else await result:
                return
            await asyncio.sleep(0.01)


async def test_engine_rides_out_an_exhausted_pool(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsmq")
    queues = Queues.from_url(redis_url, ns=NS, realtime=True, max_connections=1, pool_timeout=0.02)
    publisher = Queues.from_url(redis_url, ns=NS, realtime=True)
    listener = RealtimeListener(redis_url, NS)
    outages: list[BaseException] = []
    engine = DeliveryEngine(queues, listener, poll_interval=0.1, on_redis_error=outages.append)
    stats = pool_stats(queues.redis)
    assert stats is not None and stats.size == 1
    names = [f"pool{i}" for i in range(20)]
    assert isinstance(queues.redis, Redis)
    pool = queues.redis.connection_pool
    try:
        async with asyncio.timeout(30):
            for name in names:
                await publisher.create_queue(name, vt=30)
            await engine.start()
            # The one connection: every command of the engine must wait.
            held = await pool.get_connection()  # type: ignore[no-untyped-call]
            sinks = {name: Sink() for name in names}
            subs = {name: await engine.subscribe(name, sinks[name]) for name in names}
            sent = {name: [await publisher.send_message(name, f"{name}-{i}") for i in range(5)]
                    for name in names}  # fmt: skip
            # Every consumer was woken, found no connection within 20 ms and backs off.
            await until(lambda: engine.health.pool_exhausted >= len(names))
            assert engine.redis_healthy
            await pool.release(held)

            for name in names:
                got = await sinks[name].wait_for(5)
                assert sorted(m.id for m in got) == sorted(sent[name])
            acks = [engine.ack(subs[n], m.id) for n in names for m in sinks[n].got]
            assert all(await asyncio.gather(*acks))

            async def drained() -> bool:
                counts = await publisher.visible_counts(names)
                attrs = [await publisher.get_queue_attributes(n) for n in names]
                return not any(counts.values()) and all(a.msgs == 0 for a in attrs)

            await until(drained)
            await until(lambda: engine.pending.count() == 0)
    finally:
        async with asyncio.timeout(15):
            await engine.stop()
            await listener.close()
            await queues.close()
            await publisher.close()
    assert outages == [] and engine.health.episodes == 0
    assert stats.exhausted >= len(names) and stats.waits >= stats.exhausted
    assert OUTAGE_LOG not in caplog.text
    assert "pool saturated" in caplog.text and "redis_pool_size" in caplog.text

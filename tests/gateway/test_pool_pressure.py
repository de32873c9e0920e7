"""An exhausted Redis connection pool is backpressure, not an outage (issue #7).

Unit tests of the classification and of :class:`RedisHealth`; then the delivery engine and a
gateway node on a real private Redis with a one-connection pool whose only connection the test
holds, so every command of the node finds the pool exhausted until it is let go.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.exceptions as rex
from aiohttp import web
from redis.asyncio import Redis

from wsmq.connections import PoolExhaustedError, PoolStats, is_pool_exhausted, pool_stats
from wsmq.engine.delivery import DeliveryEngine
from wsmq.engine.health import POOL_LOG_EVERY, RedisHealth
from wsmq.gateway import Gateway, serve
from wsmq.gateway.metrics import GatewayMetrics
from wsmq.queue import Message, Queues
from wsmq.realtime.listener import RealtimeListener

NS = "rsmq"
OUTAGE_LOG = "Redis unreachable"


# -- classification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "pool"),
    [
        (PoolExhaustedError("no free Redis connection"), True),
        (rex.MaxConnectionsError("Too many connections"), True),  # redis-py non-blocking pools
        (rex.ConnectionError("No connection available."), True),  # redis-py blocking pool
        (rex.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), False),
        (rex.ConnectionError("Connection closed by server."), False),
        (rex.TimeoutError("Timeout connecting to server"), False),
        (rex.BusyLoadingError("Redis is loading the dataset in memory"), False),
        (ConnectionResetError(104, "Connection reset by peer"), False),
    ],
)
def test_pool_exhaustion_is_told_apart_from_an_outage(exc: BaseException, pool: bool) -> None:
    assert is_pool_exhausted(exc) is pool


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


def test_pool_metrics_read_the_pool_stats() -> None:
    metrics = GatewayMetrics()
    assert "wsmq_redis_pool_exhausted_total 0.0" in metrics.render().decode()
    stats = PoolStats(size=4, waits=7, exhausted=2)
    metrics.watch_pool(stats)
    stats.exhausted += 1
    text = metrics.render().decode()
    assert "wsmq_redis_pool_size 4.0" in text
    assert "wsmq_redis_pool_waits_total 7.0" in text
    assert "wsmq_redis_pool_exhausted_total 3.0" in text


# -- the delivery engine on a real Redis ----------------------------------------------------------


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


# -- a gateway node -------------------------------------------------------------------------------


@pytest.fixture
async def tiny_pool_node(redis_url: str) -> AsyncIterator[Gateway]:
    async def authenticate(request: web.Request) -> Any:
        return request.headers.get("x-user")  # the user id is the queue it may use

    gateway = await serve(
        redis_url=redis_url,
        host="127.0.0.1",
        port=0,
        authenticate=authenticate,
        secret=None,
        redis_pool_size=1,
        poll_interval=0.2,
        shutdown_timeout=3.0,
    )
    try:
        yield gateway
    finally:
        async with asyncio.timeout(10):
            await gateway.close()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found is not None, name
    return float(found.group(1))


async def test_gateway_with_an_exhausted_pool_subscribes_everyone_and_stays_ready(
    tiny_pool_node: Gateway, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsmq")
    node = tiny_pool_node
    assert node.url is not None
    base = node.url.replace("ws://", "http://").rstrip("/")
    pool = node.state.queues.redis.connection_pool
    pool.timeout = 0.05  # the pool's wait bound, short so that it runs out within the test
    users = [f"user{i}" for i in range(30)]
    publisher = Queues.from_url(redis_url, ns=NS)
    async with aiohttp.ClientSession() as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        try:
            async with asyncio.timeout(30):
                for user in users:
                    sockets.append(
                        await http.ws_connect(
                            node.url, headers={"x-user": user}, protocols=("wsmq.v1",)
                        )
                    )
                held = await pool.get_connection()
                for ws, user in zip(sockets, users, strict=True):
                    await ws.send_str(f"/subscribe/{user}")  # creates the queue: needs Redis
                await until(lambda: pool.stats.exhausted >= len(users))
                async with http.get(f"{base}/readyz") as resp:
                    assert resp.status == 200  # a busy pool is no reason to send clients away
                await pool.release(held)

                for ws, user in zip(sockets, users, strict=True):
                    assert await ws.receive_json() == {"type": "subscribed", "queue": user}
                sent = {u: {await publisher.send_message(u, f"{u}-{i}") for i in range(3)}
                        for u in users}  # fmt: skip
                for ws, user in zip(sockets, users, strict=True):
                    got: set[str] = set()
                    while len(got) < 3:
                        frame = await ws.receive_json()
                        assert frame["type"] == "message", frame
                        got.add(frame["id"])
                        await ws.send_str(f"/ack/{user}/{frame['id']}")
                    assert got == sent[user]
                    acked: set[str] = set()
                    while len(acked) < 3:
                        frame = await ws.receive_json()
                        assert frame["type"] == "acked", frame
                        acked.add(frame["id"])
                async with http.get(f"{base}/readyz") as resp:
                    assert resp.status == 200
                async with http.get(f"{base}/metrics") as resp:
                    text = await resp.text()
        finally:
            for ws in sockets:
                await ws.close()
            await publisher.close()
    assert metric(text, "wsmq_redis_pool_exhausted_total") >= len(users)
    assert metric(text, "wsmq_redis_pool_waits_total") >= len(users)
    assert metric(text, "wsmq_redis_pool_size") == 1
    assert metric(text, "wsmq_redis_errors_total") == 0
    assert node.state.engine.health.episodes == 0
    assert OUTAGE_LOG not in caplog.text
    assert "pool saturated" in caplog.text

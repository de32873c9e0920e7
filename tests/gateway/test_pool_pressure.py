"""An exhausted Redis connection pool is backpressure, not an outage (issue #7).

The classification and the pool metrics; then a gateway node on a real private Redis with a
one-connection pool whose only connection the test holds, so every command of the node finds the
pool exhausted until it is let go. The engine's side: ``tests/engine/test_pool_pressure.py``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.exceptions as rex
from aiohttp import web

from wsmq.connections import PoolExhaustedError, PoolStats, is_pool_exhausted
from wsmq.gateway import Gateway, serve
from wsmq.gateway.metrics import GatewayMetrics
from wsmq.queue import Queues

from ..engine.test_pool_pressure import until

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
    client: Any = node.state.queues.redis  # a standalone client with a WaitingConnectionPool
    pool = client.connection_pool
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

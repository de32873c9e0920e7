"""Queues and the realtime listener through Sentinel, across a real master failover."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis

from wsmq.connections import redis_from_url
from wsmq.queue import Queues, RealtimeListener
from wsmq.testing.redisproc_cluster import SentinelSetup


async def next_queue(listener: RealtimeListener, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        return await anext(listener)


async def test_queue_and_listener_survive_a_sentinel_failover(
    sentinel_factory: Callable[..., SentinelSetup],
) -> None:
    setup = sentinel_factory()
    queues = Queues.from_url(setup.url, realtime=True)
    listener = RealtimeListener(setup.url, backoff_min=0.05, backoff_max=0.5)
    raw = redis_from_url(setup.url, decode_responses=True)
    assert isinstance(raw, Redis)
    try:
        async with asyncio.timeout(60):
            assert queues.layout == "rsmq"  # Sentinel keeps RSMQ's layout
            await queues.create_queue("orders")
            assert await listener.subscribe("orders") is True
            first = await queues.send_message("orders", "before failover")
            assert await next_queue(listener) == "orders"
            assert await raw.execute_command("WAIT", 1, 2000) == 1  # type: ignore[no-untyped-call]
            await asyncio.to_thread(setup.kill_master)
            # Same objects: the message is on the promoted replica ...
            msg = await queues.receive_message("orders", vt=0)
            assert msg is not None and msg.id == first
            # ... the listener found the new master and reported the queue once ...
            assert await next_queue(listener, timeout=30) == "orders"
            assert listener.connections >= 2
            # ... and notifications flow again.
            second = await queues.send_message("orders", "after failover")
            assert await next_queue(listener) == "orders"
            got = await queues.receive_messages("orders", 10)
            assert {m.id for m in got} == {first, second}
    finally:
        await listener.aclose()
        await queues.close()
        await raw.aclose()


async def test_bounded_pools_wait_instead_of_failing(sentinel_url: str, cluster_url: str) -> None:
    for url in (sentinel_url, cluster_url):
        client = redis_from_url(url, max_connections=2, decode_responses=True)
        try:
            async with asyncio.timeout(20):
                await asyncio.gather(*(client.set(f"k{i}", str(i)) for i in range(50)))
                got = await asyncio.gather(*(client.get(f"k{i}") for i in range(50)))
                assert got == [str(i) for i in range(50)]
        finally:
            await client.aclose()

"""RealtimeListener: one pub/sub connection for many queues, reconnects and re-reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from wsmq.queue import Queues, RealtimeListener
from wsmq.testing.redisproc import RedisProcess, free_port


async def next_queue(listener: RealtimeListener, timeout: float = 5.0) -> str:
    async with asyncio.timeout(timeout):
        return await anext(listener)


@pytest.fixture
async def listener(redis_url: str) -> AsyncIterator[RealtimeListener]:
    lst = RealtimeListener(redis_url, ns="rsmq", backoff_min=0.05, backoff_max=0.2)
    try:
        yield lst
    finally:
        await lst.aclose()


async def test_notifications_for_subscribed_queues_only(
    queues: Queues, listener: RealtimeListener
) -> None:
    for name in ("a", "b", "c"):
        await queues.create_queue(name)
    assert await listener.subscribe("a") is True
    assert await listener.subscribe("b") is True
    assert listener.queues == {"a", "b"}
    await queues.send_message("c", "not subscribed")
    await queues.send_message("b", "x")
    assert await next_queue(listener) == "b"
    await queues.send_message("a", "x")
    assert await next_queue(listener) == "a"
    await listener.unsubscribe("b")
    await listener.unsubscribe("never")  # no-op
    await queues.send_message("b", "after unsubscribe")
    await queues.send_message("a", "y")
    assert await next_queue(listener) == "a"
    assert listener.connections == 1


async def test_iteration_coalesces_repeated_notifications(
    queues: Queues, listener: RealtimeListener
) -> None:
    await queues.create_queue("a")
    await queues.create_queue("b")
    await listener.subscribe("a")
    await listener.subscribe("b")
    for _ in range(5):
        await queues.send_message("a", "x")
    await queues.send_message("b", "x")
    # wait until the last notification has been read, then everything is pending at once
    assert await next_queue(listener) == "a"
    assert await next_queue(listener) == "b"
    await queues.send_message("a", "again")
    assert await next_queue(listener) == "a"


async def test_callback_mode(queues: Queues, redis_url: str) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()
    calls: list[str] = []
    failed = asyncio.Event()

    async def on_message(qname: str) -> None:
        calls.append(qname)
        if len(calls) == 1:
            failed.set()
            raise RuntimeError("a failing callback does not stop the listener")
        await seen.put(qname)

    async with RealtimeListener(redis_url, callback=on_message) as lst:
        await queues.create_queue("cb")
        await lst.subscribe("cb")
        await queues.send_message("cb", "1")
        # Notifications read together wake a queue once: send the second after the failure.
        async with asyncio.timeout(5):
            await failed.wait()
        await queues.send_message("cb", "2")
        async with asyncio.timeout(5):
            assert await seen.get() == "cb"
        assert calls == ["cb", "cb"]
        lst.set_callback(seen.put_nowait)  # sync callbacks work too
        await queues.send_message("cb", "3")
        async with asyncio.timeout(5):
            assert await seen.get() == "cb"


async def test_listener_from_existing_client_and_namespace(redis_url: str) -> None:
    client: Redis = Redis.from_url(redis_url)
    q = Queues(client, ns="ns2", realtime=True)
    lst = RealtimeListener(client, ns="ns2")
    try:
        await q.create_queue("x")
        await lst.subscribe("x")
        await q.send_message("x", "hi")
        assert await next_queue(lst) == "x"
    finally:
        await lst.aclose()
        await client.aclose()


async def test_listener_from_queues_client(queues: Queues) -> None:
    """The usual wiring: the listener copies the settings of the Queues pool."""
    lst = RealtimeListener(queues.redis, ns=queues.ns)
    try:
        await queues.create_queue("x")
        assert await lst.subscribe("x")
        await queues.send_message("x", "hi")
        assert await next_queue(lst) == "x"
        assert await queues.redis.ping()  # its own connection, the pool is untouched
    finally:
        await lst.aclose()


async def test_aclose_ends_iteration(listener: RealtimeListener, queues: Queues) -> None:
    await queues.create_queue("a")
    await listener.subscribe("a")

    async def consume() -> list[str]:
        return [q async for q in listener]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await listener.aclose()
    async with asyncio.timeout(5):
        assert await task == []
    with pytest.raises(RuntimeError):
        await listener.subscribe("a")


async def test_survives_redis_restart_and_reports_queues(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    proc = redis_factory()
    q = Queues.from_url(proc.url, realtime=True)
    lst = RealtimeListener(proc.url, backoff_min=0.05, backoff_max=0.2)
    try:
        await q.create_queue("a")
        await q.create_queue("b")
        assert await lst.subscribe("a") and await lst.subscribe("b")
        proc.restart()  # same port; the listener's connection breaks
        reported = {await next_queue(lst, 10), await next_queue(lst, 10)}
        assert reported == {"a", "b"}  # every subscribed queue reported once after reconnect
        assert lst.connections == 2 and lst.connected.is_set()
        await q.create_queue("a")
        await q.send_message("a", "after restart")
        assert await next_queue(lst) == "a"
    finally:
        await lst.aclose()
        await q.close()


async def test_subscribe_while_redis_down(redis_factory: Callable[..., RedisProcess]) -> None:
    port = free_port()
    lst = RealtimeListener(
        f"redis://127.0.0.1:{port}/0", backoff_min=0.05, backoff_max=0.2, connect_timeout=1
    )
    try:
        async with asyncio.timeout(5):
            assert await lst.subscribe("late") is False  # fails fast, remembered
        assert lst.queues == {"late"}
        proc = redis_factory(port=port)
        assert await next_queue(lst, 10) == "late"  # reported once connected
        q = Queues.from_url(proc.url, realtime=True)
        try:
            await q.create_queue("late")
            await q.send_message("late", "x")
            assert await next_queue(lst) == "late"
        finally:
            await q.close()
    finally:
        await lst.aclose()


async def test_idle_link_answers_pings_without_reconnecting(queues: Queues, redis_url: str) -> None:
    # Regression: redis-py 8.1 mangles a subscribed-mode PONG when decode_responses=True; the
    # listener took that for a dead link and reconnected every two ping intervals.
    lst = RealtimeListener(redis_url, ns="rsmq", ping_interval=0.2)
    try:
        await queues.create_queue("idle")
        assert await lst.subscribe("idle") is True
        # Idle on purpose: 7 ping intervals (the bug reconnected every two), not synchronisation.
        await asyncio.sleep(1.5)
        assert lst.connections == 1
        await queues.send_message("idle", "still listening")
        assert await next_queue(lst) == "idle"
    finally:
        await lst.aclose()

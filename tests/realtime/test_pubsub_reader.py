"""PubSubReader: pub/sub replies in bulk from the hiredis reader, with a get_message fallback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from wsmq.queue import RealtimeListener
from wsmq.realtime.pubsub_reader import PubSubReader, Reply


@pytest.fixture(params=["fast", "fallback"])
async def pubsub(request: pytest.FixtureRequest, raw: Redis) -> AsyncIterator[PubSub]:
    ps = raw.pubsub()
    await ps.connect()  # type: ignore[no-untyped-call]
    try:
        yield ps
    finally:
        await ps.aclose()  # type: ignore[no-untyped-call, unused-ignore]


def make_reader(ps: PubSub, request: pytest.FixtureRequest) -> PubSubReader:
    reader = PubSubReader(ps)
    if request.node.callspec.params["pubsub"] == "fallback":
        reader._gets = None  # what another redis-py (or no hiredis) gets
    return reader


async def read_until(reader: PubSubReader, count: int) -> tuple[list[Reply], int]:
    """Read until ``count`` replies came (bounded); return them and the number of reads."""
    got: list[Reply] = []
    reads = 0
    async with asyncio.timeout(10):
        while len(got) < count:
            got.extend(await reader.read(1.0))
            reads += 1
    return got, reads


async def test_installed_redis_py_takes_the_fast_path(raw: Redis) -> None:
    ps = raw.pubsub()
    try:
        await ps.connect()  # type: ignore[no-untyped-call]
        # If this fails after a redis-py upgrade, notifications cost one get_message each
        # again: update PubSubReader to the new parser internals.
        assert PubSubReader(ps).fast
    finally:
        await ps.aclose()  # type: ignore[no-untyped-call, unused-ignore]


async def test_burst_arrives_complete_in_order_and_in_bulk(
    request: pytest.FixtureRequest, raw: Redis, pubsub: PubSub
) -> None:
    reader = make_reader(pubsub, request)
    await pubsub.subscribe("a", "b")
    confirms, _ = await read_until(reader, 2)
    assert confirms == [("subscribe", "a", 1), ("subscribe", "b", 2)]
    async with raw.pipeline(transaction=False) as pipe:
        for i in range(600):
            pipe.publish("a" if i % 3 else "b", str(i))
        await pipe.execute()
    got, reads = await read_until(reader, 600)
    # the payload too: a hand-off carries its message in it (docs/delivery.md, Hand-off)
    assert got == [("message", "a" if i % 3 else "b", str(i)) for i in range(600)]
    if reader.fast:
        assert reads < 60  # one read per socket read, not per reply
    else:
        assert reads == 600


async def test_idle_read_times_out_empty(request: pytest.FixtureRequest, pubsub: PubSub) -> None:
    reader = make_reader(pubsub, request)
    await pubsub.subscribe("quiet")
    assert await read_until(reader, 1) == ([("subscribe", "quiet", 1)], 1)
    async with asyncio.timeout(5):
        assert await reader.read(0.05) == []


async def test_ping_reply_has_no_channel(request: pytest.FixtureRequest, pubsub: PubSub) -> None:
    reader = make_reader(pubsub, request)
    await pubsub.subscribe("c")
    await read_until(reader, 1)
    await pubsub.ping()
    (reply,), _ = await read_until(reader, 1)
    # RESP3: a plain PONG; the fallback gets whatever redis-py makes of it
    assert reply[1] is None or reply[1] in ("O", "")


async def test_server_closing_the_connection_raises(
    request: pytest.FixtureRequest, raw: Redis, pubsub: PubSub
) -> None:
    reader = make_reader(pubsub, request)
    await pubsub.subscribe("d")
    await read_until(reader, 1)
    await raw.client_kill_filter(_type="pubsub")
    with pytest.raises((RedisConnectionError, ConnectionError, OSError)):
        async with asyncio.timeout(5):
            while True:
                await reader.read(1.0)


async def test_listener_wakes_once_per_read_for_a_burst(redis_url: str, raw: Redis) -> None:
    calls: list[str] = []
    arrived = asyncio.Event()

    def on_notify(qname: str) -> None:
        calls.append(qname)
        if qname == "last":
            arrived.set()

    listener = RealtimeListener(redis_url, ns="rsmq", callback=on_notify)
    try:
        assert await listener.subscribe("burst") is True
        assert await listener.subscribe("last") is True
        async with raw.pipeline(transaction=False) as pipe:
            for i in range(500):
                pipe.publish("rsmq:rt:burst", str(i))
            pipe.publish("rsmq:rt:last", "1")
            await pipe.execute()
        async with asyncio.timeout(10):
            await arrived.wait()
        # At least one wake-up for the burst, and far fewer than one per notification.
        assert 1 <= calls.count("burst") <= 50
    finally:
        await listener.aclose()


async def test_unsubscribed_channels_leave_redis_py_bookkeeping(
    request: pytest.FixtureRequest, pubsub: PubSub
) -> None:
    # A long-lived listener subscribes and unsubscribes queues as sockets come and go: the
    # connection's channel table must not keep the ones it left.
    reader = make_reader(pubsub, request)
    names = [f"ch{i}" for i in range(50)]
    await pubsub.subscribe(*names)
    await read_until(reader, len(names))
    await pubsub.unsubscribe(*names[:40])
    replies, _ = await read_until(reader, 40)
    assert {kind for kind, *_ in replies} == {"unsubscribe"}
    assert set(pubsub.channels) == set(names[40:])
    assert not pubsub.pending_unsubscribe_channels

"""Sends are idempotent under client retries (issue #7).

redis-py's ``Retry`` re-sends a command whose reply was lost to a connection error.  For the
send scripts that used to store a second copy under a new id; now the random id suffix, chosen
in Python and so identical in the retry, names a short-lived marker key and the replay returns
the first id without storing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from wsmq.queue import Queues
from wsmq.queue.ids import to_base36
from wsmq.queue.queues import SEND_MARKER_TTL, Layout
from wsmq.queue.scripts import run_script
from wsmq.testing.redisproc import RedisProcess


class ReplyEater:
    """A TCP proxy to Redis that, once armed, forwards the next request but drops the
    connection instead of passing its reply back (the reply is lost in transit)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.eaten = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._transports: list[asyncio.WriteTransport] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._transports += [writer.transport, up_writer.transport]

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if self.armed:
                    self.armed = False
                    self.eaten += 1
                    writer.transport.abort()  # Redis applied the command; the reply is lost
                    up_writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        try:
            with contextlib.suppress(OSError, ConnectionError):
                await asyncio.gather(upstream(), downstream())
        finally:
            writer.transport.abort()
            up_writer.transport.abort()
            self._handlers.discard(task)

    async def aclose(self) -> None:
        # Abort rather than cancel: Python 3.11's start_server logs cancelled handlers.
        for transport in self._transports:
            transport.abort()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def eater(redis_url: str, redis_proc: RedisProcess) -> AsyncIterator[ReplyEater]:
    proxy = ReplyEater(redis_proc.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()


@pytest.fixture
async def via_eater(eater: ReplyEater) -> AsyncIterator[Queues]:
    """Queues as the gateway builds them (from_url: redis-py Retry on), through the proxy."""
    q = Queues.from_url(f"redis://127.0.0.1:{eater.port}/0", realtime=True)
    try:
        yield q
    finally:
        await q.close()


@contextlib.asynccontextmanager
async def subscribed(raw: Redis, channel: str) -> AsyncIterator[PubSub]:
    async with raw.pubsub() as pubsub:
        await pubsub.subscribe(channel)
        confirm = await pubsub.get_message(timeout=5)
        assert confirm is not None and confirm["type"] == "subscribe"
        yield pubsub


async def notifications(raw: Redis, pubsub: PubSub, channel: str) -> list[str]:
    """Payloads published so far: publish an end mark and read up to it (Redis keeps order)."""
    await raw.publish(channel, "end")
    out: list[str] = []
    while True:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert msg is not None, "end mark not received"
        if msg["data"] == "end":
            return out
        out.append(msg["data"])


async def test_send_with_lost_reply_stores_one_message(
    eater: ReplyEater, via_eater: Queues, raw: Redis
) -> None:
    async with asyncio.timeout(10):
        await via_eater.create_queue("q")
        warm_up = await via_eater.send_message("q", "warm-up")  # send script cached now
        async with subscribed(raw, "rsmq:rt:q") as pubsub:
            eater.armed = True
            msg_id = await via_eater.send_message("q", "once")  # retried, no error surfaces
            assert eater.eaten == 1
            assert await notifications(raw, pubsub, "rsmq:rt:q") == ["2"]
        assert await raw.zrange("rsmq:q", 0, -1) == [warm_up, msg_id]
        assert await raw.hget("rsmq:q:Q", msg_id) == "once"
        attrs = await via_eater.get_queue_attributes("q")
        assert (attrs.totalsent, attrs.msgs) == (2, 2)


async def test_batch_send_with_lost_reply_stores_one_batch(
    eater: ReplyEater, via_eater: Queues, raw: Redis
) -> None:
    async with asyncio.timeout(10):
        await via_eater.create_queue("q")
        await via_eater.send_messages("q", ["warm-up"])
        await raw.delete("rsmq:q")  # only the batch's ids left in the zset
        async with subscribed(raw, "rsmq:rt:q") as pubsub:
            eater.armed = True
            ids = await via_eater.send_messages("q", ["a", "b", "c"])
            assert eater.eaten == 1
            assert await notifications(raw, pubsub, "rsmq:rt:q") == ["3"]
        assert await raw.zrange("rsmq:q", 0, -1) == ids
        assert await raw.hmget("rsmq:q:Q", ids) == ["a", "b", "c"]
        assert (await via_eater.get_queue_attributes("q")).totalsent == 4


Send = Callable[[], Awaitable[Any]]


async def recorded(send: Send) -> tuple[Any, Send]:
    """Run ``send``; return its reply and a function that runs its one script call again with
    the same keys and ARGV, as redis-py's Retry does after a lost reply."""
    calls: list[tuple[Any, str, list[Any], list[Any]]] = []

    async def recording(client: Any, name: str, keys: Any, args: Any = ()) -> Any:
        calls.append((client, name, list(keys), list(args)))
        return await run_script(client, name, keys, args)

    with mock.patch("wsmq.queue.queues.run_script", recording):
        first = await send()
    [(client, name, keys, args)] = calls
    return first, lambda: run_script(client, name, keys, args)


async def state(queues: Queues, qname: str) -> tuple[int, int, int]:
    attrs = await queues.get_queue_attributes(qname)
    fields = await queues.redis.hlen(queues.keys.attributes(qname))
    return attrs.totalsent, attrs.msgs, int(fields)


async def test_replayed_send_returns_the_stored_id_and_changes_nothing(queues: Queues) -> None:
    await queues.create_queue("r")
    msg_id, replay = await recorded(lambda: queues.send_message("r", "x"))
    assert await state(queues, "r") == (1, 1, 7)  # 6 settings/counters + 1 body
    assert await replay() == msg_id
    assert await state(queues, "r") == (1, 1, 7)
    ids, replay = await recorded(lambda: queues.send_messages("r", ["a", "b", "c"]))
    assert await state(queues, "r") == (4, 4, 10)
    assert await replay() == ids
    assert await state(queues, "r") == (4, 4, 10)
    received = await queues.receive_messages("r", 10)
    assert sorted(m.id for m in received) == sorted([msg_id, *ids])


async def test_send_markers_expire(queues: Queues) -> None:
    await queues.create_queue("m")
    one = await queues.send_message("m", "x")
    batch = await queues.send_messages("m", ["a", "b"])
    marker = queues.keys.send_marker("m", one[10:])
    batch_marker = queues.keys.send_marker("m", batch[0][10:])
    for key in (marker, batch_marker):
        assert 0 < await queues.redis.pttl(key) <= SEND_MARKER_TTL * 1000
    assert await queues.redis.get(marker) == one
    base = await queues.redis.get(batch_marker)  # the batch's base time, not its ids
    assert isinstance(base, str)
    assert [to_base36(int(base) + i) for i in (0, 1)] == [i[:10] for i in batch]
    # One marker per batch: none for the other messages.
    assert await queues.redis.exists(queues.keys.send_marker("m", batch[1][10:])) == 0


async def test_distinct_sends_of_the_same_body_are_all_stored(queues: Queues) -> None:
    await queues.create_queue("d")
    ids = list(await asyncio.gather(*(queues.send_message("d", "same") for _ in range(10))))
    ids += await queues.send_messages("d", ["same"] * 3)
    ids += await queues.send_messages("d", ["same"] * 3)
    assert len(set(ids)) == 16
    attrs = await queues.get_queue_attributes("d")
    assert (attrs.totalsent, attrs.msgs) == (16, 16)


BODIES = st.text(st.characters(codec="utf-8"), max_size=40)


def test_replays_of_any_send_change_nothing(redis_url: str) -> None:
    """Any send, on either layout, replayed 1-3 times (also after its messages were consumed):
    the same reply each time, the queue unchanged."""

    async def scenario(
        layout: Layout, bodies: list[str], batch: bool, delay: int | None, replays: int, gone: bool
    ) -> None:
        qname = f"p{layout}"
        # Realtime only on RSMQ's layout: the cluster layout's SPUBLISH needs Redis 7.
        realtime = layout == "rsmq"
        async with Queues.from_url(redis_url, realtime=realtime, layout=layout) as queues:
            await queues.ensure_queue(qname)

            async def send() -> Any:
                if batch:
                    return await queues.send_messages(qname, bodies, delay=delay)
                return await queues.send_message(qname, bodies[0], delay=delay)

            first, replay = await recorded(send)
            if gone:  # consumed before the retry arrived: it must not come back
                ids = first if batch else [first]
                assert await queues.delete_messages(qname, ids) == len(ids)
            before = await state(queues, qname)
            for _ in range(replays):
                assert await replay() == first
            assert await state(queues, qname) == before

    @settings(max_examples=25, deadline=None)
    @given(
        st.sampled_from(["rsmq", "cluster"]),
        st.lists(BODIES, min_size=1, max_size=5),
        st.booleans(),
        st.sampled_from([None, 0, 5]),
        st.integers(min_value=1, max_value=3),
        st.booleans(),
    )
    def check(
        layout: Layout, bodies: list[str], batch: bool, delay: int | None, replays: int, gone: bool
    ) -> None:
        asyncio.run(scenario(layout, bodies, batch, delay, replays, gone))

    check()

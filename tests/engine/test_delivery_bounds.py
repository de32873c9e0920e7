"""Delivery engine bounds against a real private Redis: bytes per subscription, acks that
mean deleted, outages counted apart from failed calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from wsmq.engine.consumer import MESSAGE_OVERHEAD
from wsmq.engine.delivery import DeleteNotApplied
from wsmq.engine.health import RedisHealth
from wsmq.engine.settle import PendingOps
from wsmq.queue import Queues

from .test_delivery import EngineFactory, Sink, attrs, make_engine, queues

__all__ = ["make_engine", "queues"]  # fixtures, used by name


async def test_the_outbox_is_bounded_in_bytes_and_refills_once_written(
    queues: Queues, make_engine: EngineFactory
) -> None:
    """A window of 10 000 and a writer stuck on its first message: the engine receives only
    what fits ``max_outbox_bytes`` (sized from the last message), stops there, and resumes as
    the writer drains."""
    await queues.create_queue("q1", vt=60)
    body = "z" * 5_000
    cost = len(body) + MESSAGE_OVERHEAD
    engine = await make_engine(poll_interval=60, batch_size=50, max_outbox_bytes=100_000)
    sink = Sink(cap=10_000)
    sink.gate = asyncio.Event()
    sub = await engine.subscribe("q1", sink)
    await queues.send_message("q1", body)
    async with asyncio.timeout(5):
        await sink.delivering.wait()  # the first message is being written, and stays there
    await queues.send_messages("q1", [body] * 199)
    async with asyncio.timeout(5):
        while not sub.byte_bound:  # set by the cycle that found the outbox full
            await asyncio.sleep(0.01)
    received = (await attrs(queues, "q1"))[2]
    # The one being written, then the byte room in messages of that size, plus one; not a
    # whole receive batch (50).
    assert received <= 1 + 100_000 // cost + 1, received
    assert 100_000 <= sub.outbox_bytes <= 100_000 + cost
    sink.gate.set()
    got = await sink.wait_for(200, timeout=10)
    assert len(got) == 200 and sub.outbox_bytes == 0


async def test_without_a_byte_bound_only_the_window_counts(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=60)
    await queues.send_messages("q1", ["z" * 5_000] * 50)
    engine = await make_engine(poll_interval=60, batch_size=50)
    sink = Sink(cap=10_000)
    sink.gate = asyncio.Event()
    sub = await engine.subscribe("q1", sink)
    async with asyncio.timeout(5):
        await sink.delivering.wait()
    assert (await attrs(queues, "q1"))[2] == 50 and not sub.byte_bound
    sink.gate.set()
    await sink.wait_for(50)


def test_outages_and_failed_calls_are_counted_apart() -> None:
    outages: list[BaseException] = []
    failures: list[BaseException] = []
    health = RedisHealth(outages.append, on_failure=failures.append)
    for _ in range(3):
        health.failed(ConnectionError("down"))
    health.ok()
    health.failed(ConnectionError("down again"))
    assert (len(outages), len(failures), health.episodes, health.failures) == (2, 4, 2, 4)


@pytest.mark.parametrize("stop_first", [False, True], ids=["redis-back", "engine-stopped"])
async def test_an_ack_returns_only_once_its_delete_landed(
    stop_first: bool, queues: Queues, make_engine: EngineFactory
) -> None:
    """A delete that fails (Redis unreachable) holds the ack until a flush applies it; an
    engine stopping first fails the ack instead of reporting it deleted."""
    await queues.create_queue("q1", vt=60)
    await queues.send_message("q1", "m")
    # No realtime: its subscribe confirmation wakes a re-check cycle whose successful receive
    # could land after the failed delete and end the outage before the check below.
    engine = await make_engine(realtime=False, poll_interval=60)
    sink = Sink(ack_mode=True)
    sub = await engine.subscribe("q1", sink)
    (msg,) = await sink.wait_for(1)
    real_delete = queues.delete_messages
    down = True

    async def delete_messages(qname: str, ids: Iterable[str]) -> int:
        if down:
            raise ConnectionError("Redis unreachable")
        return await real_delete(qname, ids)

    queues.delete_messages = delete_messages  # type: ignore[method-assign]
    ack = asyncio.create_task(engine.ack(sub, msg.id))
    async with asyncio.timeout(5):
        while "q1" not in engine.pending.waiters:
            await asyncio.sleep(0.01)
    assert not ack.done() and not engine.redis_healthy
    if stop_first:
        await engine.stop()
        with pytest.raises(DeleteNotApplied):
            await ack
        assert (await attrs(queues, "q1"))[0] == 1  # not deleted
        return
    down = False
    await engine.pending.flush_all(queues, engine.health)  # what the next poll or cycle does
    async with asyncio.timeout(5):
        assert await ack
    assert (await attrs(queues, "q1"))[0] == 0


async def test_a_waiter_whose_deletes_already_landed_is_resolved_by_the_next_flush(
    queues: Queues,
) -> None:
    """A group cancelled (shutdown) after its deletes landed leaves its waiter alone in
    PendingOps: the flush answers it rather than failing it as not deleted."""
    await queues.create_queue("q1")
    pending = PendingOps()
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    pending.add_waiter("q1", fut)
    await pending.flush_all(queues, RedisHealth())
    assert fut.done() and fut.exception() is None

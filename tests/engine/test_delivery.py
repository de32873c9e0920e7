"""Delivery engine against a real private Redis: wake-ups, backpressure, ack modes, faults.

Subscribers here are small classes implementing the engine's ``Subscriber`` protocol (the
engine's own interface, not a fake of another part). Waits are on events with bounded timeouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wsmq.backoff import Backoff
from wsmq.engine.consumer import QueueConsumer
from wsmq.engine.delivery import (
    DeliveryEngine,
    EngineStopped,
    plan_round_robin,
)
from wsmq.queue import Message, Queues
from wsmq.queue.errors import InvalidFormat
from wsmq.realtime.listener import RealtimeListener
from wsmq.testing.redisproc import RedisProcess

NS = "rsmq"


class Sink:
    """A subscriber that records what it gets; ``cap`` bounds its window."""

    def __init__(self, *, ack_mode: bool = False, cap: int = 100, accept: bool = True) -> None:
        self.ack_mode = ack_mode
        self.cap = cap
        self.accept = accept
        self.got: list[Message] = []
        self.unacked = 0
        self.gate: asyncio.Event | None = None  # when set, deliver() blocks until it opens
        self.delivering = asyncio.Event()
        self._arrived = asyncio.Condition()

    def window(self) -> int:
        return max(0, self.cap - (self.unacked if self.ack_mode else len(self.got)))

    async def deliver(self, msg: Message) -> bool:
        self.delivering.set()
        if self.gate is not None:
            await self.gate.wait()
        if not self.accept:
            return False
        self.got.append(msg)
        if self.ack_mode:
            self.unacked += 1
        async with self._arrived:
            self._arrived.notify_all()
        return True

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[Message]:
        """Wait until at least ``n`` messages arrived; return them all."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.got) >= n)
        return self.got

    def bodies(self) -> list[str]:
        return [m.message for m in self.got]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Re-check a Redis-side condition (no event exists for it) until true, bounded."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


class Counting:
    """Count calls of some ``Queues`` methods; lets a test await the n-th call."""

    def __init__(self, queues: Queues, *names: str) -> None:
        self.calls: dict[str, int] = dict.fromkeys(names, 0)
        self._changed = asyncio.Condition()
        for name in names:
            setattr(queues, name, self._wrap(name, getattr(queues, name)))

    def _wrap(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            finally:
                self.calls[name] += 1
                async with self._changed:
                    self._changed.notify_all()

        return wrapper

    async def wait_calls(self, name: str, n: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.calls[name] >= n)


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(redis_url, ns=NS, realtime=True)
    try:
        yield q
    finally:
        await q.close()


EngineFactory = Callable[..., Awaitable[DeliveryEngine]]


@asynccontextmanager
async def running_engines(url: str, queues: Queues) -> AsyncIterator[EngineFactory]:
    engines: list[DeliveryEngine] = []
    listeners: list[RealtimeListener] = []

    async def make(realtime: bool = True, **kwargs: Any) -> DeliveryEngine:
        listener = RealtimeListener(url, NS) if realtime else None
        if listener is not None:
            listeners.append(listener)
        engine = DeliveryEngine(queues, listener, **kwargs)
        engines.append(engine)
        await engine.start()
        return engine

    try:
        yield make
    finally:
        async with asyncio.timeout(15):  # stop() is bounded; a hang fails here, not at 120 s
            for engine in engines:
                await engine.stop()
            for listener in listeners:
                await listener.close()


@pytest.fixture
async def make_engine(redis_url: str, queues: Queues) -> AsyncIterator[EngineFactory]:
    async with running_engines(redis_url, queues) as make:
        yield make


async def attrs(queues: Queues, qname: str) -> tuple[int, int, int]:
    """``(msgs, hiddenmsgs, totalrecv)``."""
    a = await queues.get_queue_attributes(qname)
    return a.msgs, a.hiddenmsgs, a.totalrecv


# -- pure parts ------------------------------------------------------------------------------


def test_plan_round_robin_respects_windows_and_rotates() -> None:
    assert plan_round_robin([2, 2], 4) == ([0, 1, 0, 1], 0)
    assert plan_round_robin([1, 5], 4) == ([0, 1, 1, 1], 0)
    assert plan_round_robin([3, 3], 3, start=1) == ([1, 0, 1], 0)
    assert plan_round_robin([0, 0], 3) == ([], 0)
    assert plan_round_robin([], 3) == ([], 0)
    plan, _ = plan_round_robin([1, 1], 5)  # windows hold fewer than offered
    assert plan == [0, 1]


def test_backoff_grows_to_cap_with_jitter() -> None:
    b = Backoff(base=0.1, cap=1.0, rand=lambda: 1.0)
    assert [round(b.next(), 3) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    low = Backoff(base=0.1, cap=1.0, rand=lambda: 0.0)
    assert low.next() == pytest.approx(0.05)
    b.reset()
    assert b.next() == pytest.approx(0.1)


# -- delivery --------------------------------------------------------------------------------


async def test_delivers_messages_sent_before_and_after_subscribe_in_order(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1")
    for i in range(3):
        await queues.send_message("q1", f"m{i}")
    engine = await make_engine(poll_interval=60)
    sink = Sink()
    await engine.subscribe("q1", sink)
    await sink.wait_for(3)
    for i in range(3, 6):
        await queues.send_message("q1", f"m{i}")
    await sink.wait_for(6)
    assert sink.bodies() == [f"m{i}" for i in range(6)]
    # Legacy mode: each message is deleted once written.
    await eventually(lambda: _eq(attrs(queues, "q1"), (0, 0, 6)))
    assert await queues.queue_exists("q1")


async def _eq(coro: Awaitable[Any], expected: Any) -> bool:
    return bool(await coro == expected)


async def test_legacy_failed_write_releases_at_once(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    engine = await make_engine(poll_interval=60)
    dead = Sink(accept=False, cap=1)
    sub = await engine.subscribe("q1", dead)
    await queues.send_message("q1", "hello")
    async with asyncio.timeout(5):
        await dead.delivering.wait()
    await engine.unsubscribe(sub)
    alive = Sink()
    await engine.subscribe("q1", alive)
    started = time.monotonic()
    (msg,) = await alive.wait_for(1, timeout=5)
    assert msg.message == "hello" and msg.rc == 2
    assert time.monotonic() - started < 5  # well before the 30 s vt
    await eventually(lambda: _eq(attrs(queues, "q1"), (0, 0, 2)))


async def test_v1_keeps_message_until_ack(queues: Queues, make_engine: EngineFactory) -> None:
    await queues.create_queue("q1", vt=30)
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True)
    sub = await engine.subscribe("q1", sink)
    await queues.send_message("q1", "keep")
    (msg,) = await sink.wait_for(1)
    assert sub.unacked == 1 and sub.held == (msg.id,)
    msgs, hidden, _ = await attrs(queues, "q1")
    assert (msgs, hidden) == (1, 1)  # received, hidden, not deleted
    legacy = await engine.subscribe("q1", Sink())
    assert not await engine.ack(legacy, msg.id)  # not its message
    assert not await engine.ack(sub, "x" * 32)
    assert await engine.ack(sub, msg.id)
    assert sub.unacked == 0
    assert (await attrs(queues, "q1"))[:2] == (0, 0)
    assert not await engine.ack(sub, msg.id)  # once only


async def test_ack_opens_the_window(queues: Queues, make_engine: EngineFactory) -> None:
    await queues.create_queue("q1", vt=30)
    for i in range(3):
        await queues.send_message("q1", f"m{i}")
    engine = await make_engine(poll_interval=60)  # no poll: only the ack can wake it
    sink = Sink(ack_mode=True, cap=1)
    sub = await engine.subscribe("q1", sink)
    for n in (1, 2, 3):
        got = await sink.wait_for(n)
        assert len(got) == n and sub.unacked == 1
        assert (await attrs(queues, "q1"))[2] == n  # one at a time from Redis
        sink.unacked -= 1
        assert await engine.ack(sub, got[-1].id)
    assert sink.bodies() == ["m0", "m1", "m2"]
    assert engine.stats() == {
        "consumers": 1,
        "subscriptions": 1,
        "unacked": 0,
        "pending_ops": 0,
        "redis_healthy": True,
    }


async def test_subscribe_before_the_queue_exists(
    queues: Queues, make_engine: EngineFactory
) -> None:
    engine = await make_engine(poll_interval=60)
    sink = Sink()
    await engine.subscribe("late", sink)
    await queues.create_queue("late")
    await queues.send_message("late", "first")
    (msg,) = await sink.wait_for(1)
    assert msg.message == "first"


async def test_queue_deleted_under_subscribers(queues: Queues, make_engine: EngineFactory) -> None:
    await queues.create_queue("q1")
    engine = await make_engine(poll_interval=60)
    holder = Sink(ack_mode=True)
    sub = await engine.subscribe("q1", holder)
    await queues.send_message("q1", "gone")
    await holder.wait_for(1)
    other = Sink()
    await engine.subscribe("q1", other)
    await queues.delete_queue("q1")
    await engine.unsubscribe(sub)  # nothing to release any more: no error, nothing recreated
    assert not await queues.queue_exists("q1")
    assert engine.stats()["pending_ops"] == 0
    await queues.create_queue("q1")  # the consumer still waits for it
    await queues.send_message("q1", "back")
    (msg,) = await other.wait_for(1)
    assert msg.message == "back"


async def test_dead_letter_queue_still_applies(queues: Queues, make_engine: EngineFactory) -> None:
    await queues.create_queue("dlq")
    await queues.create_queue("q1", vt=30, max_receive_count=1, dead_letter_queue="dlq")
    engine = await make_engine(poll_interval=60)
    first = Sink(ack_mode=True)
    sub = await engine.subscribe("q1", first)
    await queues.send_message("q1", "poison")
    await first.wait_for(1)
    dead = Sink()
    await engine.subscribe("dlq", dead)
    await engine.unsubscribe(sub)  # back to visible, but it was received max_receive_count times
    again = Sink()
    await engine.subscribe("q1", again)
    (msg,) = await dead.wait_for(1)
    assert msg.message == "poison"
    assert again.got == []
    assert (await queues.get_queue_attributes("q1")).totalexceeded == 1


async def test_unsubscribe_puts_unacked_back_at_once(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    engine = await make_engine(poll_interval=60)
    first = Sink(ack_mode=True, cap=3)
    sub = await engine.subscribe("q1", first)
    for i in range(5):
        await queues.send_message("q1", f"m{i}")
    await first.wait_for(3)
    assert sub.unacked == 3  # window 3: the other two stay in Redis
    assert (await attrs(queues, "q1"))[2] == 3
    second = Sink(ack_mode=True)
    await engine.subscribe("q1", second)
    await second.wait_for(2)
    await engine.unsubscribe(sub)  # the socket died
    got = await second.wait_for(5, timeout=5)  # long before the 30 s vt
    assert sorted(m.message for m in got) == [f"m{i}" for i in range(5)]
    assert sub.closed and sub.unacked == 0
    assert not await engine.ack(sub, first.got[0].id)


async def test_window_zero_takes_nothing_from_redis(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1")
    counting = Counting(queues, "visible_counts", "receive_with_next")
    engine = await make_engine(poll_interval=0.05)
    sink = Sink(cap=0)
    sub = await engine.subscribe("q1", sink)
    for i in range(5):
        await queues.send_message("q1", f"m{i}")
    await counting.wait_calls("visible_counts", 4)  # several polls saw visible messages
    assert counting.calls["receive_with_next"] == 0
    assert sink.got == []
    assert await attrs(queues, "q1") == (5, 0, 0)  # nothing received: totalrecv 0
    sink.cap = 2
    sub.wake()  # e.g. the socket drained
    await sink.wait_for(2)
    await counting.wait_calls("visible_counts", counting.calls["visible_counts"] + 2)
    assert sink.bodies() == ["m0", "m1"]
    assert (await attrs(queues, "q1"))[::2] == (3, 2)  # exactly the window was received


async def test_round_robin_between_local_subscribers(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1")
    engine = await make_engine(poll_interval=60)
    a, b = Sink(cap=0), Sink(cap=0)
    sub_a = await engine.subscribe("q1", a)
    sub_b = await engine.subscribe("q1", b)
    assert engine.queue_names == ["q1"]  # one consumer for both
    for i in range(10):
        await queues.send_message("q1", f"m{i}")
    a.cap = b.cap = 100
    sub_a.wake()
    sub_b.wake()
    await a.wait_for(5)
    await b.wait_for(5)
    assert sorted(a.bodies() + b.bodies()) == sorted(f"m{i}" for i in range(10))
    assert len(a.got) == len(b.got) == 5
    await engine.unsubscribe(sub_a)
    await engine.unsubscribe(sub_b)
    await eventually(lambda: _true(not engine.queue_names))  # the consumer stopped
    assert await queues.queue_exists("q1")  # never deleted


async def _true(value: bool) -> bool:
    return value


async def test_delayed_message_arrives_by_timer_without_polling(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1")
    counting = Counting(queues, "receive_with_next", "visible_counts")
    engine = await make_engine(poll_interval=60)
    sink = Sink()
    await engine.subscribe("q1", sink)
    await counting.wait_calls("receive_with_next", 1)
    sent = time.monotonic()
    await queues.send_message("q1", "later", delay=1)
    await sink.wait_for(1, timeout=4)
    elapsed = time.monotonic() - sent
    assert 0.8 <= elapsed < 3.0
    # initial check + realtime wake + timer (+1 for a timer a hair early): no polling loop.
    assert counting.calls["receive_with_next"] <= 5
    assert counting.calls["visible_counts"] == 0


async def test_unacked_message_comes_back_after_vt_by_timer(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=1)
    counting = Counting(queues, "visible_counts")
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True)
    sub = await engine.subscribe("q1", sink)
    await queues.send_message("q1", "again")
    first, second = await sink.wait_for(2, timeout=4)  # not acked: back after the 1 s vt
    assert (first.id, first.rc, second.rc) == (second.id, 1, 2)
    assert second.sent == first.sent
    assert sub.held == (first.id,)  # one lease, moved to the new delivery
    assert await engine.ack(sub, first.id)
    assert (await attrs(queues, "q1"))[:2] == (0, 0)
    assert counting.calls["visible_counts"] == 0  # woken by the timer, not by polling


async def test_message_without_realtime_reached_by_fallback_poll(
    redis_url: str, queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1")
    engine = await make_engine(poll_interval=0.2)
    sink = Sink()
    await engine.subscribe("q1", sink)
    quiet = Queues.from_url(redis_url, ns=NS, realtime=False)  # publishes no notification
    try:
        await quiet.send_message("q1", "silent")
    finally:
        await quiet.close()
    (msg,) = await sink.wait_for(1, timeout=3)
    assert msg.message == "silent"


async def test_one_poll_round_trip_covers_all_queues(
    redis_url: str, queues: Queues, make_engine: EngineFactory
) -> None:
    names = [f"q{i}" for i in range(20)]
    for name in names:
        await queues.create_queue(name)
    counting = Counting(queues, "visible_counts", "receive_with_next")
    # No realtime: its subscription confirmations would wake the consumers once more.
    engine = await make_engine(realtime=False, poll_interval=0.05)
    for name in names:
        await engine.subscribe(name, Sink())
    await counting.wait_calls("receive_with_next", len(names))  # every consumer went idle
    await counting.wait_calls("visible_counts", counting.calls["visible_counts"] + 1)
    before = _commandstats(redis_url)
    start = counting.calls["visible_counts"]
    await counting.wait_calls("visible_counts", start + 5)
    after = _commandstats(redis_url)
    polls = counting.calls["visible_counts"] - start
    scripts = sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval"))
    # One script call per poll (+1 in flight while sampling), not one per queue.
    assert polls <= scripts <= polls + 1
    assert after.get("zrangebyscore", 0) == before.get("zrangebyscore", 0)  # no receives


def _commandstats(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def test_stop_releases_in_flight_in_bounded_time(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    await queues.create_queue("q2", vt=30)
    engine = await make_engine(poll_interval=60, stop_timeout=0.5)
    holder = Sink(ack_mode=True)
    await engine.subscribe("q1", holder)
    stuck = Sink()
    stuck.gate = asyncio.Event()  # never opens: a socket that stopped reading
    await engine.subscribe("q2", stuck)
    for i in range(3):
        await queues.send_message("q1", f"a{i}")
    await queues.send_message("q2", "b0")
    await holder.wait_for(3)
    async with asyncio.timeout(5):
        await stuck.delivering.wait()
    started = time.monotonic()
    await engine.stop()
    assert time.monotonic() - started < 2.0
    assert await queues.visible_counts(["q1", "q2"]) == {"q1": 3, "q2": 1}
    with pytest.raises(EngineStopped):
        await engine.subscribe("q1", Sink())


async def test_bad_queue_name_is_rejected(make_engine: EngineFactory) -> None:
    engine = await make_engine(poll_interval=60)
    with pytest.raises(InvalidFormat):
        await engine.subscribe("bad name", Sink())
    assert engine.queue_names == []


# -- Redis faults ----------------------------------------------------------------------------


@pytest.fixture
def aof_redis(redis_factory: Callable[..., RedisProcess]) -> Iterator[RedisProcess]:
    yield redis_factory(appendonly=True)


async def test_redis_restart_mid_stream_loses_nothing(aof_redis: RedisProcess) -> None:
    # Fail fast instead of redis-py's default 10 retries, so the outage is seen promptly.
    client = aredis.Redis.from_url(
        aof_redis.url, retry=Retry(NoBackoff(), 1), socket_connect_timeout=0.5, socket_timeout=2
    )
    queues = Queues(client, ns=NS, realtime=True)
    errors: list[BaseException] = []
    recovered: list[float] = []
    down, up = asyncio.Event(), asyncio.Event()

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        down.set()

    def on_recovered(downtime: float) -> None:
        recovered.append(downtime)
        up.set()

    try:
        await queues.create_queue("q1", vt=30)
        await queues.create_queue("q2", vt=30)
        for i in range(5):
            await queues.send_message("q1", f"m{i}")
        async with running_engines(aof_redis.url, queues) as make:
            engine = await make(
                poll_interval=0.1, on_redis_error=on_error, on_redis_recovered=on_recovered
            )
            holder = Sink(ack_mode=True)
            held = await engine.subscribe("q2", holder)
            await queues.send_message("q2", "held")
            (msg,) = await holder.wait_for(1)
            sink = Sink(cap=1000)
            sink.gate = asyncio.Event()  # hold the first batch mid-write
            await engine.subscribe("q1", sink)
            async with asyncio.timeout(5):
                await sink.delivering.wait()

            aof_redis.kill()  # the batch was received; its deletes cannot be done now
            async with asyncio.timeout(5):
                await down.wait()
            sink.gate.set()
            await sink.wait_for(5)
            # The ack waits for Redis: it returns only once its delete landed.
            ack = asyncio.create_task(engine.ack(held, msg.id))
            async with asyncio.timeout(5):  # its delete failed and waits in PendingOps
                while "q2" not in engine.pending.waiters:
                    await asyncio.sleep(0.01)
            assert not ack.done()  # not answered while the delete has not landed
            aof_redis.start()
            async with asyncio.timeout(10):
                await up.wait()
            async with asyncio.timeout(10):
                assert await ack
            for i in range(5, 10):
                await queues.send_message("q1", f"m{i}")
            await sink.wait_for(10, timeout=10)
            # Nothing lost, nothing twice: the deletes of the written batch and the ack were
            # applied after the restart (vt 30 would have redelivered them otherwise).
            assert sink.bodies() == [f"m{i}" for i in range(10)]
            assert len(errors) == 1 and len(recovered) == 1  # one episode, one log/hook
            await eventually(lambda: _eq(attrs(queues, "q2"), (0, 0, 1)))
            await eventually(lambda: _eq(attrs(queues, "q1"), (0, 0, 10)))
            assert engine.pending.count() == 0
    finally:
        await client.aclose()


# -- hot path: group-committed acks, per-subscriber writers -------------------------------------


async def test_acks_arriving_together_share_one_delete_round_trip(
    redis_url: str, queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    # Load the delete script first (a NOSCRIPT retry would count as a second call).
    await queues.delete_message("q1", await queues.send_message("q1", "warm-up"))
    await queues.send_messages("q1", [f"m{i}" for i in range(50)])
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True, cap=50)
    sub = await engine.subscribe("q1", sink)
    got = await sink.wait_for(50)
    counting = Counting(queues, "delete_messages", "receive_with_next")
    # The sink's window stays 0 (it counts its own unacked): the acks cause no receive, so
    # every Redis command from here on is one of theirs.
    before = _commandstats(redis_url)
    results = await asyncio.gather(*(engine.ack(sub, m.id) for m in got))
    after = _commandstats(redis_url)
    assert results == [True] * 50 and sub.unacked == 0
    assert counting.calls == {"delete_messages": 1, "receive_with_next": 0}
    scripts = sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval"))
    assert scripts == 1  # Redis agrees: 50 acks, one round trip
    assert (await attrs(queues, "q1"))[:2] == (0, 0)
    assert not await engine.ack(sub, got[0].id)  # acked once only


async def test_ack_many_deletes_a_group_in_one_round_trip_and_reports_each_id(
    redis_url: str, queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    await queues.delete_message("q1", await queues.send_message("q1", "warm-up"))
    await queues.send_messages("q1", [f"m{i}" for i in range(20)])
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True, cap=20)
    sub = await engine.subscribe("q1", sink)
    ids = [m.id for m in await sink.wait_for(20)]
    unknown = "0" * 32
    before = _commandstats(redis_url)
    # A repeated id counts once; an id the subscription never held is refused.
    results = await engine.ack_many(sub, [*ids[:10], ids[0], unknown])
    after = _commandstats(redis_url)
    assert results == [True] * 10 + [False, False]
    assert sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval")) == 1
    assert sub.unacked == 10 and (await attrs(queues, "q1"))[:2] == (10, 10)
    assert await engine.ack_many(sub, []) == []
    await engine.unsubscribe(sub)
    assert await engine.ack_many(sub, ids[10:12]) == [False, False]  # released, not deleted
    assert (await attrs(queues, "q1"))[:2] == (10, 0)


async def test_slow_subscriber_does_not_stall_a_fast_one(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    engine = await make_engine(poll_interval=60)
    slow = Sink(cap=1)
    slow.gate = asyncio.Event()  # a socket that stopped reading
    await engine.subscribe("q1", slow)
    await queues.send_message("q1", "s0")
    async with asyncio.timeout(5):
        await slow.delivering.wait()  # stuck in its write
    fast = Sink()
    await engine.subscribe("q1", fast)
    for i in range(10):
        await queues.send_message("q1", f"f{i}")
    got = await fast.wait_for(10)  # the consumer kept receiving for the fast socket
    assert [m.message for m in got] == [f"f{i}" for i in range(10)]
    assert slow.got == []
    slow.gate.set()
    (msg,) = await slow.wait_for(1)
    assert msg.message == "s0"
    await eventually(lambda: _eq(attrs(queues, "q1"), (0, 0, 11)))  # all written, all deleted


async def test_stop_releases_what_a_stuck_writer_of_a_gone_subscriber_holds(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=30)
    engine = await make_engine(poll_interval=60, stop_timeout=0.5)
    stuck = Sink(cap=5)
    stuck.gate = asyncio.Event()  # never opens
    sub = await engine.subscribe("q1", stuck)
    await queues.send_messages("q1", ["a", "b", "c"])
    async with asyncio.timeout(5):
        await stuck.delivering.wait()
    await engine.unsubscribe(sub)  # the consumer ends; its writer is still in deliver()
    await eventually(lambda: _true(not engine.queue_names))
    # The two messages never handed to deliver() are released by the writer at once...
    await eventually(lambda: _eq(queues.visible_counts(["q1"]), {"q1": 2}))
    started = time.monotonic()
    await engine.stop()  # ...and the one stuck in deliver() by stop(), in bounded time
    assert time.monotonic() - started < 2.0
    assert await queues.visible_counts(["q1"]) == {"q1": 3}
    assert stuck.got == []


# -- batched writes (subscribers with deliver_batch) -------------------------------------


class BatchSink(Sink):
    """A :class:`Sink` that takes messages in batches and may fail after ``fail_after``."""

    def __init__(self, *, fail_after: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []
        self.fail_after = fail_after

    async def deliver_batch(self, msgs: Sequence[Message]) -> int:
        self.delivering.set()
        if self.gate is not None:
            await self.gate.wait()
        self.batches.append(len(msgs))
        take = len(msgs)
        if self.fail_after is not None:
            take = max(0, min(take, self.fail_after - len(self.got)))
        for msg in msgs[:take]:
            await super().deliver(msg)
        return take


async def test_a_backlog_goes_out_in_few_large_batches_in_order(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q")
    await queues.send_messages("q", [f"m{i}" for i in range(300)])
    engine = await make_engine(poll_interval=60, batch_size=100)
    sink = BatchSink(cap=1000)
    await engine.subscribe("q", sink)
    await sink.wait_for(300)
    assert sink.bodies() == [f"m{i}" for i in range(300)]
    assert max(sink.batches) > 1
    assert all(n <= QueueConsumer.WRITE_BATCH for n in sink.batches)
    await eventually(lambda: _eq(attrs(queues, "q"), (0, 0, 300)))


@pytest.mark.parametrize("ack_mode", [False, True])
async def test_a_partly_written_batch_settles_the_written_and_releases_the_rest(
    queues: Queues, make_engine: EngineFactory, ack_mode: bool
) -> None:
    await queues.create_queue("q", vt=60)
    await queues.send_messages("q", [f"m{i}" for i in range(10)])
    engine = await make_engine(poll_interval=60, batch_size=10)
    sink = BatchSink(fail_after=4, cap=10, ack_mode=ack_mode)
    sub = await engine.subscribe("q", sink)
    await sink.wait_for(4)
    if ack_mode:
        for msg in sink.got:
            await engine.ack(sub, msg.id)
    # Written ones are deleted (legacy on write, v1 on ack); the other 6 are visible again at
    # once, long before the 60 s vt, and the broken subscriber gets nothing more.
    await eventually(lambda: _eq(attrs(queues, "q"), (6, 0, 10)))
    await engine.unsubscribe(sub)
    again = BatchSink(cap=10)
    await engine.subscribe("q", again)
    async with asyncio.timeout(5):
        got = await again.wait_for(6)
    assert [m.message for m in got] == [f"m{i}" for i in range(4, 10)]
    assert len(sink.got) == 4


async def test_listener_subscriptions_of_different_queues_run_concurrently(
    queues: Queues, make_engine: EngineFactory
) -> None:
    # A reconnect storm subscribes thousands of queues: each needs a confirmed SUBSCRIBE (one
    # round trip). They must overlap, not queue behind one engine-wide lock.
    names = [f"par{i}" for i in range(5)]
    engine = await make_engine(poll_interval=60)
    listener = engine.listener
    assert listener is not None
    original = listener.subscribe
    inside = 0
    all_inside = asyncio.Event()

    async def slow_subscribe(qname: str) -> bool:
        nonlocal inside
        inside += 1
        if inside == len(names):
            all_inside.set()
        await all_inside.wait()  # only returns once every queue's subscribe is in here at once
        return await original(qname)

    listener.subscribe = slow_subscribe  # type: ignore[method-assign]
    await queues.create_queue("par0")
    sinks = [Sink() for _ in names]
    async with asyncio.timeout(10):
        pairs = zip(names, sinks, strict=True)
        subs = await asyncio.gather(*(engine.subscribe(n, s) for n, s in pairs))
    assert [s.qname for s in subs] == names
    await queues.send_message("par0", "woken by the confirmed subscription")
    await sinks[0].wait_for(1)


async def test_an_idle_consumer_parks_without_a_task_and_any_wake_up_restarts_it(
    queues: Queues, make_engine: EngineFactory
) -> None:
    """10k idle queues must not cost 10k tasks: an idle consumer's task ends (parks); a send,
    a window opening and the last unsubscribe each start it again; stop() is not held."""
    await queues.create_queue("q1")
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True, cap=1)
    sub = await engine.subscribe("q1", sink)
    consumer = engine._consumers["q1"]

    def consumer_tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("wsmq-consumer:")]

    def parked_check(c: Any) -> Callable[[], Awaitable[bool]]:
        async def parked() -> bool:
            return bool(c.parked and c.task is None and not consumer_tasks())

        return parked

    parked = parked_check(consumer)
    await eventually(parked)
    await queues.send_message("q1", "m0")  # realtime notification
    await sink.wait_for(1)
    await queues.send_message("q1", "m1")  # the window (1) is full: parks window-bound
    await eventually(parked)
    assert sink.bodies() == ["m0"]
    sink.unacked -= 1
    assert await engine.ack(sub, sink.got[0].id)  # the window opens: a new task receives m1
    await sink.wait_for(2)
    assert sink.bodies() == ["m0", "m1"]
    await engine.unsubscribe(sub)  # last subscriber gone: the woken consumer retires
    await eventually(lambda: _eq(asyncio.sleep(0, "q1" in engine._consumers), False))
    assert await attrs(queues, "q1") == (1, 0, 2)  # m1, unacked, is visible again at once

    await queues.create_queue("q2")
    await engine.subscribe("q2", Sink())
    await eventually(parked_check(engine._consumers["q2"]))
    started = time.monotonic()
    await engine.stop()  # a parked consumer does not hold the stop
    assert time.monotonic() - started < 2.0 and not consumer_tasks()


# -- hand-off (docs/delivery.md, "Hand-off") ------------------------------------------------
# A parked receive's reply and a hand-off come on two connections: a hand-off of a message sent
# after the receive ran in Redis can reach the node before that receive's reply. The consumer
# holds it until the reply is in and hands both out in send order.


async def _hand_off_during_parked_receive(
    make_engine: EngineFactory, queues: Queues, *, handed: str, trigger: str, fail: bool
) -> Sink:
    """A subscriber of ``q`` whose receive woken by sending ``trigger`` parks it; the node takes
    the hand-off of ``handed`` (sent right after) before that receive's reply, which is lost
    with ``fail``. Returns the subscriber."""
    await queues.create_queue("q")
    taken = asyncio.Event()
    engine = await make_engine(on_handoff=lambda ok: taken.set())
    token = engine.handoff_token
    assert token is not None
    real_receive = queues.receive_with_next
    armed = asyncio.Event()

    async def receive_then_hand_off(*args: Any, **kwargs: Any) -> Any:
        reply = await real_receive(*args, **kwargs)
        if armed.is_set() and kwargs.get("park") and reply[0]:
            armed.clear()
            # This receive parked us: the next send is handed to us, and the node takes the
            # hand-off before this reply.
            await queues.send_message("q", handed)
            async with asyncio.timeout(5):
                await taken.wait()
            if fail:
                raise redis.ConnectionError("reply lost")  # its message comes back after vt
        return reply

    queues.receive_with_next = receive_then_hand_off  # type: ignore[method-assign]
    sink = Sink()
    await engine.subscribe("q", sink)

    async def parked() -> bool:
        return bool(await queues.redis.hexists(queues.keys.parked("q"), token))

    await eventually(parked)
    await queues.unpark("q", token)  # the trigger goes by notification and a receive
    armed.set()
    await queues.send_message("q", trigger)
    return sink


async def test_a_hand_off_that_overtakes_the_receive_before_it_waits_its_turn(
    make_engine: EngineFactory, queues: Queues
) -> None:
    sink = await _hand_off_during_parked_receive(
        make_engine, queues, handed="after", trigger="before", fail=False
    )
    await sink.wait_for(2)
    assert sink.bodies() == ["before", "after"]


async def test_a_hand_off_held_by_a_failing_receive_is_still_delivered(
    make_engine: EngineFactory, queues: Queues
) -> None:
    sink = await _hand_off_during_parked_receive(
        make_engine, queues, handed="handed", trigger="first", fail=True
    )
    assert [m.message for m in await sink.wait_for(1)] == ["handed"]

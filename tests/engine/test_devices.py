"""Device subscriptions in the delivery engine, on a real private Redis (two engines = two
nodes sharing it): fan-out, per-device acks, competing sockets of one device, retention
(docs/delivery.md, Devices; plain subscribers of a fan-out queue: test_devices_plain.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.engine.test_delivery import EngineFactory, Sink, eventually, running_engines
from wsmq.engine.devices import DeviceLeases
from wsmq.protocol.names import GROUP, inbox_name
from wsmq.queue import Queues

NS = "rsmq"


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(redis_url, ns=NS, realtime=True)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def make_engine(redis_url: str, queues: Queues) -> AsyncIterator[EngineFactory]:
    async with running_engines(redis_url, queues) as make:
        yield make


async def test_every_device_gets_every_message_and_acks_independently(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("alice", vt=30)
    a, b = await make_engine(poll_interval=60), await make_engine(poll_interval=60)
    laptop, phone, tablet = Sink(ack_mode=True), Sink(ack_mode=True), Sink()
    s_laptop = await a.subscribe("alice", laptop, device="laptop")
    await b.subscribe("alice", phone, device="phone")
    await b.subscribe("alice", tablet, device="tablet")  # legacy: deleted once written
    assert s_laptop.qname == inbox_name("alice", "laptop")
    for i in range(20):
        await queues.send_message("alice", f"m{i}")
    want = [f"m{i}" for i in range(20)]
    for sink in (laptop, phone, tablet):
        await sink.wait_for(20)
        assert sink.bodies() == want
    # The queue itself is empty: every message went to the inboxes.
    assert (await queues.get_queue_attributes("alice")).msgs == 0
    # Laptop acks everything; phone acks nothing: its inbox still holds all 20 (hidden).
    assert all(await a.ack_many(s_laptop, [m.id for m in laptop.got]))
    laptop_inbox = await queues.get_queue_attributes(inbox_name("alice", "laptop"))
    phone_inbox = await queues.get_queue_attributes(inbox_name("alice", "phone"))
    assert (laptop_inbox.msgs, phone_inbox.msgs, phone_inbox.hiddenmsgs) == (0, 20, 20)
    await eventually(
        lambda: _msgs(queues, inbox_name("alice", "tablet"), 0)
    )  # legacy deletes-on-write, from its own inbox only


async def _msgs(queues: Queues, name: str, n: int) -> bool:
    return (await queues.get_queue_attributes(name)).msgs == n


async def test_two_sockets_of_one_device_compete(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("bob")
    a, b = await make_engine(poll_interval=60), await make_engine(poll_interval=60)
    first, second, other = Sink(cap=5), Sink(cap=5), Sink(cap=100)
    await a.subscribe("bob", first, device="phone")
    await b.subscribe("bob", second, device="phone")
    await a.subscribe("bob", other, device="desk")
    await queues.send_messages("bob", [f"m{i}" for i in range(10)])
    await other.wait_for(10)
    await first.wait_for(5)
    await second.wait_for(5)
    assert sorted(first.bodies() + second.bodies()) == sorted(other.bodies())


async def test_unacked_messages_of_a_device_come_back_to_it_only(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("carol", vt=1)
    a, b = await make_engine(poll_interval=0.2), await make_engine(poll_interval=0.2)
    gone, stays = Sink(ack_mode=True), Sink(ack_mode=True)
    sub = await a.subscribe("carol", gone, device="d1")
    s2 = await b.subscribe("carol", stays, device="d2")
    await queues.send_messages("carol", ["x", "y"])
    await gone.wait_for(2)
    await stays.wait_for(2)
    assert all(await b.ack_many(s2, [m.id for m in stays.got]))
    await a.unsubscribe(sub)  # released at once: visible again in d1's inbox only
    back = Sink(ack_mode=True)
    await b.subscribe("carol", back, device="d1")
    got = await back.wait_for(2)
    assert sorted(m.message for m in got) == ["x", "y"]
    assert all(m.rc == 2 for m in got)
    assert len(stays.got) == 2  # d2 got nothing again


async def test_retention_removes_idle_inbox_never_one_in_use(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("erin")
    removed: list[int] = []
    idle_node = await make_engine(poll_interval=60)
    sweeper = await make_engine(
        poll_interval=0.05, device_retention=0.3, on_devices_removed=removed.append
    )
    idle, busy = Sink(ack_mode=True), Sink(ack_mode=True)
    s_idle = await idle_node.subscribe("erin", idle, device="idle")
    await sweeper.subscribe("erin", busy, device="busy")
    await queues.send_message("erin", "m")
    await idle.wait_for(1)
    await busy.wait_for(1)
    await idle_node.unsubscribe(s_idle)
    keys = queues.keys

    async def idle_gone() -> bool:
        return not await queues.redis.exists(keys.attributes(inbox_name("erin", "idle")))

    async def counted() -> bool:  # (the node counts it once the script's reply is back)
        return removed == [1]

    await eventually(idle_gone)
    await eventually(counted)
    devices = await queues.redis.zrange(keys.devices("erin"), 0, -1)
    assert devices == ["busy"]  # in use for far longer than the retention: kept
    await asyncio.sleep(0)  # (no wait needed: the lease of "busy" is 30 s)
    await queues.send_message("erin", "n")
    await busy.wait_for(2)


async def test_leases_are_renewed_and_dropped_on_stop(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("gina")
    engine = await make_engine(poll_interval=60)
    await engine.subscribe("gina", Sink(), device="d1")
    member = f"d1/{engine.devices.holder}"
    leases = queues.keys.device_leases("gina")
    first = await queues.redis.zscore(leases, member)
    assert first is not None and first > await queues.now_ms() + 50_000  # LEASE_MS ahead
    await asyncio.sleep(0.01)  # the lease is in ms: let Redis time move on
    await engine.devices.maintain(10**9)  # due: renews (and sweeps) at once
    assert await _later(queues, leases, member, first)
    await engine.stop()
    assert await queues.redis.zscore(leases, member) is None
    registry = await queues.redis.zrange(queues.keys.devices("gina"), 0, -1)
    assert sorted(registry) == ["d1", GROUP]  # with the plain subscribers' shared inbox


async def _later(queues: Queues, key: str, member: str, than: float) -> bool:
    score = await queues.redis.zscore(key, member)
    return score is not None and score > than


class _SlowRelease(Queues):
    """Real queues whose lease release waits (bounded) for the next registration to land
    first: what a release on a busy pool connection does to a registration on a free one."""

    registered: asyncio.Event
    releasing: asyncio.Event

    async def release_device(self, qname: str, device: str, holder: str) -> None:
        self.releasing.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await self.registered.wait()
        await super().release_device(qname, device, holder)

    async def register_device(
        self, qname: str, device: str, holder: str, lease_ms: int, *, max_devices: int = 0
    ) -> bool:
        new = await super().register_device(
            qname, device, holder, lease_ms, max_devices=max_devices
        )
        self.registered.set()
        return new


async def test_a_resubscribe_right_after_the_last_release_keeps_the_lease(
    redis_url: str, queues: Queues
) -> None:
    slow = _SlowRelease.from_url(redis_url, ns=NS)
    assert isinstance(slow, _SlowRelease)
    slow.registered, slow.releasing = asyncio.Event(), asyncio.Event()
    try:
        leases = DeviceLeases(slow, retention=3600)
        await leases.acquire("rs", "phone")
        slow.registered.clear()
        # The socket goes and the device comes straight back on this node.
        release = asyncio.create_task(leases.release("rs", "phone"))
        async with asyncio.timeout(5):
            await slow.releasing.wait()  # the release's call is on its way
        await leases.acquire("rs", "phone")
        await release
        assert leases.holding("rs", "phone")
        # Redis agrees: this node's lease of the device it holds is still there.
        member = f"phone/{leases.holder}"
        assert await queues.redis.zscore(queues.keys.device_leases("rs"), member) is not None
    finally:
        await slow.close()


async def test_the_sweep_drops_inbox_entries_past_the_message_ttl(queues: Queues) -> None:
    """An offline device's inbox does not grow until the retention ends: the sweep drops what
    the queue's message TTL expired (receive would never deliver it), and nothing else."""
    await queues.create_queue("ttlq", vt=30, message_ttl=1)
    await queues.create_queue("keepq", vt=30)  # no TTL: its inbox is left alone
    for qname in ("ttlq", "keepq"):
        for device in ("offline", "reader"):
            await queues.register_device(qname, device, "n1", 60_000)
            await queues.release_device(qname, device, "n1")  # not in use: offline
    old = [await queues.send_message("ttlq", f"old{i}") for i in range(3)]
    kept = await queues.send_message("keepq", "kept")
    for qname in ("ttlq", "keepq"):
        assert (await queues.fan_out(qname, 86_400_000)).moved == len(
            old if qname == "ttlq" else [kept]
        )
    reader = inbox_name("ttlq", "reader")
    in_flight = await queues.receive_messages(reader, 1)  # hidden for 30 s: not touched
    assert [m.id for m in in_flight] == old[:1]
    await asyncio.sleep(1.2)  # the behaviour under test is time passing: the TTL is 1 s
    fresh = await queues.send_message("ttlq", "fresh")
    assert (await queues.fan_out("ttlq", 86_400_000)).moved == 1
    leases = DeviceLeases(queues, retention=3600)
    await leases.sweep()
    offline = inbox_name("ttlq", "offline")
    # Dropped by the sweep itself (a receive would drop them too, and count them the same).
    assert (await queues.get_queue_attributes(offline)).totalexpired == 3
    assert (await queues.get_queue_attributes(offline)).msgs == 1
    assert (await queues.get_queue_attributes(reader)).msgs == 2  # fresh + the in-flight one
    assert [m.id for m in await queues.receive_messages(offline, 10)] == [fresh]
    assert [m.id for m in await queues.receive_messages(reader, 10)] == [fresh]
    assert await queues.delete_messages(reader, old[:1]) == 1  # the in-flight one was kept
    assert (await queues.get_queue_attributes(offline)).totalexpired == 3
    assert (await queues.get_queue_attributes(reader)).totalexpired == 2
    keep = await queues.receive_messages(inbox_name("keepq", "offline"), 10)
    assert [m.id for m in keep] == [kept]
    # Both devices stay registered (the retention, an hour, is not over).
    assert (await queues.fan_out("ttlq", 86_400_000, budget=0)).live == 2

"""Plain subscribers of a fan-out queue (docs/delivery.md, Devices): they form one more
recipient, the shared inbox ``q@~``, which they compete on. Real private Redis, two engines =
two nodes sharing it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.engine.test_delivery import EngineFactory, Sink, eventually, running_engines
from wsmq.engine.delivery import DeliveryEngine
from wsmq.engine.ledger import Subscription
from wsmq.protocol.names import GROUP, inbox_name
from wsmq.queue import Queues
from wsmq.queue.devices import DeviceInUse

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


async def _ack_all(engine: DeliveryEngine, sub: Subscription, sink: Sink) -> None:
    """Ack what ``sink`` holds (its window opens first: the ack wakes the consumer)."""
    held, sink.unacked = sink.unacked, 0
    if held:
        assert all(await engine.ack_many(sub, [m.id for m in sink.got[-held:]]))


async def _group_gone(queues: Queues, qname: str) -> bool:
    keys = queues.keys
    return await queues.redis.zscore(
        keys.devices(qname), GROUP
    ) is None and not await queues.redis.exists(keys.attributes(inbox_name(qname, GROUP)))


async def _empty(queues: Queues, name: str) -> bool:
    return (await queues.get_queue_attributes(name)).msgs == 0


async def test_a_plain_subscriber_and_two_devices_each_get_every_message(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("chat", vt=30)
    a, b = await make_engine(poll_interval=60), await make_engine(poll_interval=60)
    plain = Sink(ack_mode=True)
    s_plain = await a.subscribe("chat", plain)
    await queues.send_message("chat", "before")
    await plain.wait_for(1)  # no devices yet: a plain queue
    phone, laptop = Sink(ack_mode=True), Sink(ack_mode=True)
    await b.subscribe("chat", phone, device="phone")
    await a.subscribe("chat", laptop, device="laptop")
    want = [f"m{i}" for i in range(20)]
    await queues.send_messages("chat", want)
    for sink in (phone, laptop):
        await sink.wait_for(20)
        assert sink.bodies() == want
    await plain.wait_for(21)
    assert plain.bodies() == ["before", *want]  # each once, in order
    # The acks land where each message came from: "before" in the queue, the rest in q@~.
    await _ack_all(a, s_plain, plain)
    assert await _empty(queues, "chat")
    assert await _empty(queues, inbox_name("chat", GROUP))


async def test_plain_subscribers_on_two_nodes_compete_devices_get_all(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("team")
    a, b = await make_engine(poll_interval=60), await make_engine(poll_interval=60)
    p1, p2 = Sink(cap=5), Sink(cap=5)  # legacy: deleted (from q@~) once written
    await a.subscribe("team", p1)
    await b.subscribe("team", p2)
    d1, d2 = Sink(ack_mode=True), Sink(ack_mode=True)
    await a.subscribe("team", d1, device="d1")
    await b.subscribe("team", d2, device="d2")
    want = [f"m{i}" for i in range(10)]
    await queues.send_messages("team", want)
    for sink in (d1, d2):
        await sink.wait_for(10)
        assert sink.bodies() == want
    await p1.wait_for(5)
    await p2.wait_for(5)
    assert sorted(p1.bodies() + p2.bodies()) == sorted(want)  # split: none twice
    await eventually(lambda: _empty(queues, inbox_name("team", GROUP)))


async def test_nothing_lost_or_duplicated_when_the_first_device_registers(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("flow", vt=30)
    a, b = await make_engine(poll_interval=60), await make_engine(poll_interval=60)
    plain = Sink(ack_mode=True, cap=3)  # holds 3 unacked from the queue across the switch
    s_plain = await a.subscribe("flow", plain)
    await queues.send_messages("flow", [f"a{i}" for i in range(8)])
    await plain.wait_for(3)
    dev = Sink(ack_mode=True)
    await b.subscribe("flow", dev, device="d")  # 5 still waiting in the queue: copied to both
    await queues.send_messages("flow", [f"b{i}" for i in range(4)])
    await dev.wait_for(9)
    assert dev.bodies() == [f"a{i}" for i in range(3, 8)] + [f"b{i}" for i in range(4)]
    for want in (6, 9, 12):  # ack what it holds (routed to the queue, then to q@~), take more
        await _ack_all(a, s_plain, plain)
        await plain.wait_for(want)
    all_sent = [f"a{i}" for i in range(8)] + [f"b{i}" for i in range(4)]
    assert sorted(plain.bodies()) == sorted(all_sent)
    await _ack_all(a, s_plain, plain)
    assert await _empty(queues, "flow")
    assert await _empty(queues, inbox_name("flow", GROUP))


async def test_last_device_leaves_plain_subscribers_continue_nothing_stranded(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("dave", vt=30)
    a, b = await make_engine(poll_interval=0.2), await make_engine(poll_interval=0.2)
    plain = Sink(ack_mode=True, cap=2)
    s_plain = await a.subscribe("dave", plain)
    dev = Sink(ack_mode=True)
    s_dev = await b.subscribe("dave", dev, device="d1")
    await queues.send_messages("dave", [f"m{i}" for i in range(6)])
    await dev.wait_for(6)
    await plain.wait_for(2)  # 4 more wait in q@~ (its window is 2)
    await eventually(lambda: _group_size(queues, "dave", 6))
    with pytest.raises(DeviceInUse):
        await a.leave_device("dave", "d1")  # b still uses it
    await b.unsubscribe(s_dev)
    assert await b.leave_device("dave", "d1")
    await queues.send_messages("dave", ["after0", "after1"])  # stay in the queue: no device
    for want in (4, 6, 8):
        await _ack_all(a, s_plain, plain)
        await plain.wait_for(want)
    assert sorted(plain.bodies()) == sorted([f"m{i}" for i in range(6)] + ["after0", "after1"])
    await _ack_all(a, s_plain, plain)
    # Drained: the shared inbox is removed, the node's plain consumer is back on the queue.
    await eventually(lambda: _group_gone(queues, "dave"))
    await queues.send_message("dave", "plain again")
    await plain.wait_for(9)
    assert plain.bodies()[-1] == "plain again"
    assert not a.devices._held  # the node's lease of the shared inbox was dropped


async def _group_size(queues: Queues, qname: str, n: int) -> bool:
    return await queues.redis.zcard(queues.keys.messages(inbox_name(qname, GROUP))) == n


async def test_a_plain_subscriber_who_comes_later_gets_what_waited(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("late")
    a, b = await make_engine(poll_interval=60), await make_engine(poll_interval=60)
    dev = Sink(ack_mode=True)
    await b.subscribe("late", dev, device="d")
    await queues.send_messages("late", ["x", "y"])
    await dev.wait_for(2)
    plain = Sink()  # the shared inbox was registered with the first device: x, y wait there
    await a.subscribe("late", plain)
    await plain.wait_for(2)
    assert plain.bodies() == ["x", "y"]

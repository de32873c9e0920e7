"""The send's hand-off to a parked node (docs/delivery.md, "Hand-off"), on a real Redis.

A "node" here is a raw pub/sub connection on a hand-off channel: what the send script publishes
and writes is checked directly, as is the fallback when nobody listens any more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from wsmq.queue import Queues
from wsmq.queue.devices import register_device
from wsmq.queue.handoff import parse_handoff


@pytest.fixture
async def node(raw: Redis, queues: Queues) -> AsyncIterator[PubSub]:
    """Node ``n1`` listening on its hand-off channel and on the queue's realtime channel."""
    ps = raw.pubsub()
    await ps.subscribe(queues.keys.handoff_channel("n1"), queues.realtime_channel("q"))
    async with asyncio.timeout(5):
        for _ in range(2):  # the two subscribe confirmations
            while await ps.get_message(timeout=1.0) is None:
                pass
    try:
        yield ps
    finally:
        await ps.aclose()


async def next_message(ps: PubSub) -> tuple[str, str]:
    """The next published (channel, payload), bounded."""
    async with asyncio.timeout(5):
        while True:
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg is not None:
                return str(msg["channel"]), str(msg["data"])


async def test_a_send_to_a_parked_node_is_received_for_it_and_published_to_it(
    queues: Queues, raw: Redis, node: PubSub
) -> None:
    await queues.create_queue("q", vt=30)
    got, _ = await queues.receive_with_next("q", 10, park="n1")
    assert got == []
    assert await raw.hgetall(queues.keys.parked("q")) == {"n1": "1:30"}

    body = "line one\nline two"  # the body may hold newlines: it is the payload's last part
    msg_id = await queues.send_message("q", body)
    channel, payload = await next_message(node)
    assert channel == queues.keys.handoff_channel("n1")
    parsed = parse_handoff(payload)
    assert parsed is not None
    qname, msg = parsed
    assert (qname, msg.id, msg.message, msg.rc) == ("q", msg_id, body, 1)
    # Received for the node in the send: hidden for its vt, counted, one place less to fill.
    attrs = await queues.get_queue_attributes("q")
    assert (attrs.msgs, attrs.hiddenmsgs, attrs.totalrecv) == (1, 1, 1)
    assert await raw.hget(queues.keys.attributes("q"), f"{msg_id}:fr") == str(msg.fr)
    assert await queues.receive_message("q") is None
    # Parked for one message: the node receives again (and parks again) after taking it.
    assert await raw.exists(queues.keys.parked("q")) == 0
    # No realtime notification for it (nothing is left to receive): the next thing on the
    # queue's channel is what we publish ourselves now.
    await raw.publish(queues.realtime_channel("q"), "marker")
    assert await next_message(node) == (queues.realtime_channel("q"), "marker")


async def test_the_room_runs_out_then_sends_notify_again(
    queues: Queues, raw: Redis, node: PubSub
) -> None:
    await queues.create_queue("q")
    # receive.lua parks for one message; a registration with room for more (the format
    # allows it) is used down to its last place.
    await raw.hset(queues.keys.parked("q"), "n1", "2:30")
    for _ in range(2):
        await queues.send_message("q", "m")
        channel, _ = await next_message(node)
        assert channel == queues.keys.handoff_channel("n1")
    assert await raw.exists(queues.keys.parked("q")) == 0
    third = await queues.send_message("q", "m")
    assert await next_message(node) == (queues.realtime_channel("q"), "3")
    got = await queues.receive_message("q")
    assert got is not None and got.id == third


async def test_a_receive_parks_for_one_message_whatever_its_batch(
    queues: Queues, raw: Redis
) -> None:
    await queues.create_queue("q")
    await queues.send_message("q", "m")
    got, _ = await queues.receive_with_next("q", 50, park="n1")
    assert len(got) == 1
    assert await raw.hgetall(queues.keys.parked("q")) == {"n1": "1:30"}


async def test_a_node_nobody_listens_for_is_dropped_and_the_send_notifies(
    queues: Queues, raw: Redis, node: PubSub
) -> None:
    await queues.create_queue("q")
    await queues.receive_with_next("q", 10, park="gone")  # no listener on its channel
    msg_id = await queues.send_message("q", "m")
    assert await raw.exists(queues.keys.parked("q")) == 0
    assert await next_message(node) == (queues.realtime_channel("q"), "1")
    got = await queues.receive_message("q")
    assert got is not None and (got.id, got.rc) == (msg_id, 1)


async def test_the_dead_node_is_skipped_for_a_live_one(
    queues: Queues, raw: Redis, node: PubSub
) -> None:
    await queues.create_queue("q")
    await raw.hset(queues.keys.parked("q"), mapping={"gone": "100:30", "n1": "100:30"})
    # The send starts at a random parked node; whichever it tries first, the live node gets
    # every message, and the first send that tried the dead one dropped it (each send tries it
    # first with odds 1/2: 64 sends miss it with odds 2**-64).
    sends = 0
    while await raw.hexists(queues.keys.parked("q"), "gone") and sends < 64:
        await queues.send_message("q", "m")
        sends += 1
        channel, _ = await next_message(node)
        assert channel == queues.keys.handoff_channel("n1")
    assert await raw.hgetall(queues.keys.parked("q")) == {"n1": f"{100 - sends}:30"}


async def test_delayed_sends_and_full_batches_do_not_hand_off(
    queues: Queues, raw: Redis, node: PubSub
) -> None:
    await queues.create_queue("q")
    await queues.receive_with_next("q", 10, park="n1")
    await queues.send_message("q", "later", delay=1)
    assert await next_message(node) == (queues.realtime_channel("q"), "1")
    assert await raw.hgetall(queues.keys.parked("q")) == {"n1": "1:30"}
    # A receive that fills its batch is busy, not waiting: it unparks.
    await queues.send_messages("q", ["a", "b"])
    await next_message(node)
    got, _ = await queues.receive_with_next("q", 2, park="n1")
    assert len(got) == 2
    assert await raw.exists(queues.keys.parked("q")) == 0
    await queues.unpark("q", "n1")  # and unparking twice is harmless


async def test_a_device_registering_drops_the_parked_nodes(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("q")
    await queues.receive_with_next("q", 10, park="n1")
    assert await raw.exists(queues.keys.parked("q")) == 1
    await register_device(queues, "q", "phone", "holder", 60_000)
    assert await raw.exists(queues.keys.parked("q")) == 0


async def test_delete_queue_drops_the_parked_nodes(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("q")
    await queues.receive_with_next("q", 10, park="n1")
    await queues.delete_queue("q")
    assert await raw.exists(queues.keys.parked("q")) == 0


async def test_the_cluster_layout_never_hands_off(redis_url: str, raw: Redis) -> None:
    q = Queues.from_url(redis_url, realtime=True, layout="cluster")
    try:
        assert not q.handoffs
        await q.create_queue("q")
        await q.receive_with_next("q", 10, park="n1")
        assert await raw.exists(q.keys.parked("q")) == 0
    finally:
        await q.close()


@pytest.mark.parametrize(
    "payload",
    ["", "q\nid\n1", "q\nshort\n1\nbody", "q\n" + "a" * 32 + "\nnot-digits\nbody"],
)
def test_parse_handoff_refuses_what_is_not_one(payload: str) -> None:
    assert parse_handoff(payload) is None

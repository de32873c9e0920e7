"""Peers that stop reading, on raw sockets: the node's memory and the heartbeat stay bounded.

Node-side bounds, not Redis deployments: every test here runs on the single server only.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import cast

import aiohttp
import pytest

from wsmq.engine.consumer import MESSAGE_OVERHEAD, QueueConsumer
from wsmq.gateway import Gateway
from wsmq.gateway.connection import Connection
from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv_type, subscribe, wait_for
from .rawws import RawWebSocket

pytestmark = pytest.mark.backends("single")


def metric(node: Gateway, name: str) -> float:
    """A metric's value (labels summed) from the node's own registry."""
    text = node.state.metrics.render().decode()
    return sum(
        float(m.group(1))
        for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    )


async def wait_until_steady(queues: Queues, qname: str, polls: int = 5) -> int:
    """``totalrecv`` once it stopped moving for ``polls`` checks 0.1 s apart (bounded).

    Nothing signals "the node took all it will take": the count is watched until it stands.
    """
    previous, same = -1, 0
    async with asyncio.timeout(30):
        while same < polls:
            await asyncio.sleep(0.1)
            now = (await queues.get_queue_attributes(qname)).totalrecv
            same = same + 1 if now == previous else 0
            previous = now
    return previous


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "legacy"])
async def test_a_huge_window_does_not_pile_up_messages_of_a_peer_that_stops_reading(
    v1: bool, start_node: StartNode, make_user: MakeUser, queues: Queues,
    http: aiohttp.ClientSession,
) -> None:  # fmt: skip
    """window=100000 with the default 1 MiB write_buffer_limit: what the node takes from Redis
    for a subscription and has not written to its socket stays within the byte bound."""
    node = await start_node(window=100_000)
    limit = node.settings.write_buffer_limit
    alice, bob = await make_user(), await make_user()
    await queues.create_queue(alice.user_id, vt=300)
    await queues.create_queue(bob.user_id)
    body = "x" * 1024
    total = 20_000
    for _ in range(0, total, 1000):
        await queues.send_messages(alice.user_id, [body] * 1000)
    assert node.url is not None
    peer = await RawWebSocket.connect(
        node.url,
        {"x-token": alice.x_token, "x-access-token": alice.access_token},
        protocol="wsmq.v1" if v1 else None,
    )
    await peer.send_text(f"/subscribe/{alice.user_id}")
    if v1:
        assert json.loads(await peer.recv_text())["type"] == "subscribed"
    await peer.recv_text()  # one message arrived: from here on the peer reads nothing
    received = await wait_until_steady(queues, alice.user_id)
    written = metric(node, "wsmq_messages_delivered_total")
    # In memory: the outbox (the byte bound; receives are sized to its room from the last
    # message's size, so it is overshot by one message at most here) and the batch whose write
    # waits for the socket to drain (counted as delivered once it returns).
    bound = limit // (len(body) + MESSAGE_OVERHEAD) + 1 + QueueConsumer.WRITE_BATCH
    assert received - written <= bound, (received, written, bound)
    attrs = await queues.get_queue_attributes(alice.user_id)
    assert attrs.msgs - attrs.hiddenmsgs >= total // 2  # the rest wait in Redis, visible

    # Another user's subscription on the same node is served meanwhile.
    ws = await connect(http, node, bob)
    await subscribe(ws, bob.user_id)
    await queues.send_message(bob.user_id, "still served")
    assert (await recv_type(ws, "message", timeout=5))["message"] == "still served"
    await ws.close()
    peer.abort()

    async def released() -> bool:
        return (await queues.get_queue_attributes(alice.user_id)).hiddenmsgs == 0

    if v1:
        await wait_for(released, timeout=10)


async def test_a_peer_that_vanishes_mid_ack_burst_on_a_paused_socket_is_dropped(
    start_node: StartNode, make_user: MakeUser, queues: Queues
) -> None:
    """The node's writes to the peer are stuck (transport paused), the ack worker waits for
    room to write its replies, the read loop waits for room in the ack queue: the heartbeat
    must still judge the socket, drop it within 1.5 intervals and release its messages."""
    heartbeat = 2.0
    node = await start_node(heartbeat=heartbeat, window=200, rate_limit=100_000,
                            rate_burst=100_000)  # fmt: skip
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=300)
    body = "y" * 60_000
    for _ in range(4):  # 12 MB: more than the kernel's socket buffers take
        await queues.send_messages(alice.user_id, [body] * 50)
    assert node.url is not None
    peer = await RawWebSocket.connect(
        node.url,
        {"x-token": alice.x_token, "x-access-token": alice.access_token},
        protocol="wsmq.v1",
    )
    await peer.send_text(f"/subscribe/{alice.user_id}")

    def stuck() -> bool:  # the node's writes to the peer wait for a drain that never comes
        (conn,) = node.state.connections
        # A raw batch write buffers a whole batch; send_str (fast paths off) waits for a drain
        # once aiohttp's writer limit (256 KiB) is passed.
        c = cast(Connection, conn)
        return c.write_buffer_size() > (1 << 20 if c.frames.fast else 1 << 17)

    async with asyncio.timeout(10):
        while not stuck():
            await asyncio.sleep(0.01)
    # A burst of acks (ids not in flight: each answered with an error frame) larger than the
    # node's ack queue, whose replies exceed aiohttp's writer limit (256 KiB) so the ack worker
    # waits for a drain; then the peer neither reads nor sends again, and never closes.
    ack = f"/ack/{alice.user_id}/" + "0" * 32
    for _ in range(3000):
        await peer.send_text(ack)
    loop = asyncio.get_running_loop()
    burst_end = loop.time()
    (conn,) = node.state.connections
    async with asyncio.timeout(5):  # the case under test: a read loop that is not reading
        while conn.awaiting_frame:
            await asyncio.sleep(0.01)

    async def released() -> bool:
        attrs = await queues.get_queue_attributes(alice.user_id)
        return (attrs.msgs, attrs.hiddenmsgs) == (200, 0)

    # Within 1.5 intervals of the last frame read, plus a sweep and the release round trip.
    await wait_for(released, timeout=1.5 * heartbeat + 2.0)
    assert loop.time() - burst_end <= 1.5 * heartbeat + 2.0
    assert metric(node, "wsmq_connections") == 0
    assert 'wsmq_closes_total{code="1006"} 1.0' in node.state.metrics.render().decode()
    peer.abort()

"""The hand-off of a send to a parked consumer through real nodes (docs/delivery.md, "Hand-off").

RSMQ's key layout only: a single server and Sentinel (a Cluster never hands off; its nodes take
the realtime path, covered by every other e2e test on the cluster backend).
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from wsmq.gateway.server import Gateway
from wsmq.queue import Queues

from .conftest import V1, MakeUser, StartNode, connect, recv_type, subscribe, wait_for

pytestmark = pytest.mark.backends("single", "sentinel")


def handoffs(node: Gateway, result: str) -> float:
    value = node.state.metrics.handoffs.labels(result)._value.get()
    return float(value)


async def parked(queues: Queues, qname: str) -> dict[str, str]:
    got = await queues.redis.hgetall(queues.keys.parked(qname))
    return {str(k): str(v) for k, v in got.items()}


@pytest.mark.parametrize("protocols", [V1, ()], ids=["v1", "legacy"])
async def test_an_idle_subscriber_gets_each_send_by_hand_off(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    protocols: tuple[str, ...],
) -> None:
    node = await start_node()
    alice = await make_user("alice")
    ws = await connect(http, node, alice, v1=bool(protocols))
    if protocols:
        await subscribe(ws, alice.user_id)
    else:
        await ws.send_str(f"/subscribe/{alice.user_id}")
    # The consumer found the queue empty and parked on it: the next send goes straight to it.
    await wait_for(lambda: _has_parked(queues, alice.user_id))
    for i in range(5):
        await queues.send_message(alice.user_id, f"m{i}")
        if protocols:
            frame = await recv_type(ws, "message")
            assert (frame["message"], frame["rc"]) == (f"m{i}", 1)
            await ws.send_str(f"/ack/{alice.user_id}/{frame['id']}")
        else:
            frame = await _recv_json(ws)
            assert frame == {"message": f"m{i}"}
    assert handoffs(node, "taken") == 5
    assert handoffs(node, "released") == 0
    # Acked (v1) or written (legacy): deleted, nothing comes back.
    await wait_for(lambda: _empty(queues, alice.user_id))


async def test_handoff_off_parks_nothing_and_still_delivers(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node(handoff=False)
    alice = await make_user("alice")
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    await queues.send_message(alice.user_id, "by notification")
    frame = await recv_type(ws, "message")
    assert frame["message"] == "by notification"
    assert await parked(queues, alice.user_id) == {}
    assert handoffs(node, "taken") == 0


async def test_a_lost_hand_off_comes_back_after_its_vt(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    redis_url: str,
) -> None:
    """The failure mode: a node takes the hand-off on its channel and dies before delivering
    it. The message was received for that node, so it waits for its vt, then any node
    delivers it (rc 2), as a message received by a node that died."""
    alice = await make_user("alice")
    await queues.create_queue(alice.user_id, vt=1)
    # A "node" that listens on its hand-off channel, parks, and never delivers.
    ps = queues.redis.pubsub()
    try:
        await ps.subscribe(queues.keys.handoff_channel("doomed"))
        await queues.receive_with_next(alice.user_id, 10, park="doomed")
        msg_id = await queues.send_message(alice.user_id, "lost in hand-off")
        assert await parked(queues, alice.user_id) == {}  # parked for one message: taken
    finally:
        await ps.aclose()  # the node dies: its registration is dropped by the next send
    node = await start_node()
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    frame = await recv_type(ws, "message", timeout=10)
    assert (frame["id"], frame["rc"]) == (msg_id, 2)
    await ws.send_str(f"/ack/{alice.user_id}/{msg_id}")
    # The dead node's registration does not swallow later sends (the send that tries it
    # drops it: tests/queue/test_handoff.py).
    await queues.send_message(alice.user_id, "after")
    frame = await recv_type(ws, "message")
    assert frame["message"] == "after"


async def test_a_hand_off_nobody_can_take_is_released_at_once(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    """The node's registration outlived its consumer (its unpark lost in a Redis blip): the
    node releases the message it was handed (visible now, rc 1) and unparks."""
    node = await start_node()
    alice = await make_user("alice")
    await queues.create_queue(alice.user_id)
    token = node.state.engine.handoff_token
    assert token is not None
    await queues.redis.hset(queues.keys.parked(alice.user_id), token, "5:30")
    msg_id = await queues.send_message(alice.user_id, "nobody here")
    await wait_for(lambda: _released(node))
    await wait_for(lambda: _visible(queues, alice.user_id))
    got = await queues.receive_message(alice.user_id)
    assert got is not None and (got.id, got.rc) == (msg_id, 2)
    await wait_for(lambda: _not_parked(queues, alice.user_id))


async def _has_parked(queues: Queues, qname: str) -> bool:
    return bool(await parked(queues, qname))


async def _not_parked(queues: Queues, qname: str) -> bool:
    return not await parked(queues, qname)


async def _released(node: Gateway) -> bool:
    return handoffs(node, "released") == 1


async def _empty(queues: Queues, qname: str) -> bool:
    return (await queues.get_queue_attributes(qname)).msgs == 0


async def _visible(queues: Queues, qname: str) -> bool:
    attrs = await queues.get_queue_attributes(qname)
    return attrs.msgs - attrs.hiddenmsgs == 1


async def _recv_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    async with asyncio.timeout(10):
        msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, object] = msg.json()
    return data

"""``/nack`` and ``/extend`` through a real node: given-back messages return with rc+1 after
their delay, extended ones stay hidden past their vt, and only the holding socket may do either."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from wsmq.gateway import Gateway
from wsmq.queue import Queues

from .conftest import Cred, MakeUser, StartNode, connect, recv, recv_type, subscribe


async def visible_at_ms(queues: Queues, qname: str, msg_id: str) -> float:
    """When the message becomes visible (its score in the queue's sorted set, epoch ms)."""
    score = await queues.redis.zscore(queues.keys.messages(qname), msg_id)
    assert score is not None
    return float(score)


async def holder_of_one_message(
    node: Gateway,
    alice: Cred,
    http: aiohttp.ClientSession,
    queues: Queues,
    vt: int,
    body: str,
) -> tuple[aiohttp.ClientWebSocketResponse, str, dict[str, Any]]:
    """Alice's queue (of ``vt``) with one message, and a v1 socket holding it."""
    q = alice.user_id
    await queues.create_queue(q, vt=vt)
    await queues.send_message(q, body)
    ws = await connect(http, node, alice)
    await subscribe(ws, q)
    return ws, q, await recv_type(ws, "message", timeout=5)


async def replies(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    return [await recv(ws, timeout=5) for _ in range(n)]


async def test_a_nacked_message_comes_back_with_rc_plus_one_after_its_delay(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node, alice = await start_node(), await make_user("alice")
    # vt 60: without the nack it would stay hidden for a minute.
    ws, q, first = await holder_of_one_message(node, alice, http, queues, 60, "retry me")
    assert first["rc"] == 1
    nacked_at = time.time()
    await ws.send_str(f"/nack/{q}/{first['id']} 1")
    assert await recv(ws, timeout=5) == {"type": "nacked", "queue": q, "id": first["id"]}
    visible = await visible_at_ms(queues, q, first["id"])
    assert nacked_at * 1000 + 500 <= visible <= time.time() * 1000 + 1500
    again = await recv_type(ws, "message", timeout=5)
    assert time.time() * 1000 >= visible - 50  # not before its delay (clock granularity)
    assert (again["id"], again["rc"], again["message"]) == (first["id"], 2, "retry me")
    # Delay 0 (the default): back at once, counted once more.
    await ws.send_str(f"/nack/{q}/{again['id']}")
    assert await recv(ws, timeout=5) == {"type": "nacked", "queue": q, "id": first["id"]}
    third = await recv_type(ws, "message", timeout=5)
    assert (third["id"], third["rc"]) == (first["id"], 3)
    assert "wsmq_messages_nacked_total 2.0" in node.state.metrics.render().decode()


async def test_an_extended_message_does_not_come_back_before_its_new_deadline(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node, alice = await start_node(), await make_user("alice")
    ws, q, msg = await holder_of_one_message(node, alice, http, queues, 2, "slow job")
    await ws.send_str(f"/extend/{q}/{msg['id']} 30")
    assert await recv(ws, timeout=5) == {"type": "extended", "queue": q, "id": msg["id"]}
    assert await visible_at_ms(queues, q, msg["id"]) >= time.time() * 1000 + 25_000
    # Past the original vt (2 s) plus a poll: nothing comes back.
    with pytest.raises(TimeoutError):
        await recv_type(ws, "message", timeout=3.5)
    # Still held by this socket: the ack deletes it.
    await ws.send_str(f"/ack/{q}/{msg['id']}")
    assert await recv(ws, timeout=5) == {"type": "acked", "queue": q, "id": msg["id"]}
    assert "wsmq_messages_extended_total 1.0" in node.state.metrics.render().decode()


async def test_another_socket_cannot_nack_or_extend_a_held_message(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node, alice = await start_node(), await make_user("alice")
    holder, q, msg = await holder_of_one_message(node, alice, http, queues, 60, "mine")
    before = await visible_at_ms(queues, q, msg["id"])
    other = await connect(http, node, alice)
    await subscribe(other, q)
    await other.send_str(f"/nack/{q}/{msg['id']} 0")
    await other.send_str(f"/extend/{q}/{msg['id']} 600")
    errors = await replies(other, 2)
    assert [(e["type"], e["code"], e["id"]) for e in errors] == [
        ("error", "unknown_message", msg["id"])
    ] * 2
    assert await visible_at_ms(queues, q, msg["id"]) == before
    # The holder still holds it; an ack read before a nack of the same id wins.
    await holder.send_str(f"/ack/{q}/{msg['id']}")
    await holder.send_str(f"/nack/{q}/{msg['id']}")
    first, second = await replies(holder, 2)
    assert first == {"type": "acked", "queue": q, "id": msg["id"]}
    assert (second["code"], second["id"]) == ("unknown_message", msg["id"])
    assert not other.closed and not holder.closed
    attrs = await queues.get_queue_attributes(q)
    assert attrs.msgs == 0


async def test_bad_arguments_are_errors_and_the_connection_stays_open(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node(max_extend=60)
    alice = await make_user("alice")
    q = alice.user_id
    await queues.create_queue(q, vt=60)
    ws = await connect(http, node, alice)
    await subscribe(ws, q)
    msg_id = "0" * 32
    for frame in (f"/extend/{q}/{msg_id} 61", f"/extend/{q}/{msg_id}", f"/nack/{q}/{msg_id} -1"):
        await ws.send_str(frame)
        err = await recv(ws, timeout=5)
        assert (err["type"], err["code"]) == ("error", "bad_frame"), frame
    await ws.send_str(f"/nack/{q}/{msg_id}")  # still open: answered as usual
    err = await recv(ws, timeout=5)
    assert (err["code"], err["id"]) == ("unknown_message", msg_id)

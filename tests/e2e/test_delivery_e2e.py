"""Delivery through real nodes: order, two nodes, legacy mode, drops, backpressure."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.queue import Queues

from .conftest import (
    MakeUser,
    StartNode,
    connect,
    recv,
    recv_close,
    recv_type,
    subscribe,
    wait_for,
)

#: The core delivery paths keep all three backends in the fast-paths-off pass too (conftest).
FAST_PATHS_OFF_ALL_BACKENDS = True


async def test_two_nodes_offline_then_online_in_order(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node_a, node_b = await start_node(), await start_node()
    alice, bob = await make_user("alice"), await make_user("bob")
    await queues.create_queue(alice.user_id)
    # Published while alice is offline: waits in Redis.
    for i in range(5):
        await queues.send_message(alice.user_id, f"offline-{i}")

    ws_a = await connect(http, node_a, alice)
    ws_b = await connect(http, node_b, bob)
    await subscribe(ws_a, alice.user_id)
    await subscribe(ws_b, bob.user_id)  # created on subscribe
    got = []
    for _ in range(5):
        frame = await recv_type(ws_a, "message")
        got.append(frame["message"])
        await ws_a.send_str(f"/ack/{alice.user_id}/{frame['id']}")
    assert got == [f"offline-{i}" for i in range(5)]

    # Published while online, from anywhere: delivered in order.
    for i in range(5):
        await queues.send_message(alice.user_id, f"online-{i}")
    await queues.send_message(bob.user_id, "for bob on node B")
    online: list[str] = []
    while len(online) < 5:
        frame = await recv(ws_a)
        if frame["type"] == "message":
            online.append(frame["message"])
            await ws_a.send_str(f"/ack/{alice.user_id}/{frame['id']}")
    assert online == [f"online-{i}" for i in range(5)]
    frame = await recv_type(ws_b, "message")
    assert (frame["queue"], frame["message"]) == (bob.user_id, "for bob on node B")
    await ws_b.send_str(f"/ack/{bob.user_id}/{frame['id']}")
    assert (await recv_type(ws_b, "acked"))["id"] == frame["id"]

    async def alice_drained() -> bool:
        attrs = await queues.get_queue_attributes(alice.user_id)
        return attrs.msgs == 0

    await wait_for(alice_drained)
    await ws_a.close()
    await ws_b.close()
    # A disconnect never deletes a queue (the original did).
    assert set(await queues.list_queues()) == {alice.user_id, bob.user_id}


async def test_legacy_client_gets_original_frames_and_messages_are_deleted(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    alice = await make_user()
    await queues.create_queue(alice.user_id)
    await queues.send_message(alice.user_id, '{"json":"payload"}')
    ws = await connect(http, node, alice, v1=False)
    assert ws.protocol is None
    await ws.send_str(f"/subscribe/{alice.user_id}")
    msg = await ws.receive(timeout=5)
    # Byte for byte the original's JSON.stringify({message: body}).
    assert msg.data == json.dumps({"message": '{"json":"payload"}'}, separators=(",", ":"))

    async def deleted() -> bool:
        attrs = await queues.get_queue_attributes(alice.user_id)
        return attrs.msgs == 0

    await wait_for(deleted)
    await ws.close()


async def test_dropped_socket_releases_unacked_at_once(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    shared = "shared-q"
    alice = await make_user(queues=(shared,))
    bob = await make_user(queues=(shared,))
    await queues.create_queue(shared, vt=300)  # redelivery after vt would take 5 minutes
    ws1 = await connect(http, node, alice)
    await subscribe(ws1, shared)
    ids = [await queues.send_message(shared, f"m{i}") for i in range(3)]
    held = [(await recv_type(ws1, "message"))["id"] for _ in range(3)]
    assert sorted(held) == sorted(ids)
    ws2 = await connect(http, node, bob)
    await subscribe(ws2, shared)
    await ws1.close()  # never acked
    got: set[str] = set()
    async with asyncio.timeout(10):  # well before the 300 s vt
        while len(got) < 3:
            frame = await recv_type(ws2, "message")
            got.add(frame["id"])
            assert frame["rc"] == 2
    assert got == set(ids)
    await ws2.close()


def _small_receive_buffer_socket(addr_info: Any) -> socket.socket:
    # A fixed SO_RCVBUF turns off the kernel's receive-buffer autotuning (up to 32 MB on
    # Linux), so what the client's kernel can swallow is known and small.
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def _tcp_buffer_max(name: str) -> int:
    try:
        return int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024


async def test_slow_reader_does_not_drain_redis(
    start_node: StartNode, make_user: MakeUser, queues: Queues
) -> None:
    """A legacy reader that stops reading: the server stops taking messages from Redis."""
    node = await start_node(write_buffer_limit=64 * 1024, window=20)
    alice = await make_user()
    await queues.create_queue(alice.user_id)
    body = "x" * 60_000
    total = 300  # 18 MB
    for _ in range(0, total, 50):
        await asyncio.gather(*(queues.send_message(alice.user_id, body) for _i in range(50)))
    connector = aiohttp.TCPConnector(socket_factory=_small_receive_buffer_socket)
    async with aiohttp.ClientSession(connector=connector) as http:
        ws = await connect(http, node, alice, v1=False, max_msg_size=1 << 20)
        await ws.send_str(f"/subscribe/{alice.user_id}")
        for _ in range(3):  # read a few, then stop reading
            await ws.receive(timeout=10)

        async def left() -> int:
            attrs = await queues.get_queue_attributes(alice.user_id)
            return attrs.msgs

        # Let the server push as much as it will; it must stall well before emptying Redis.
        previous = -1
        for _ in range(50):
            await asyncio.sleep(0.1)
            now = await left()
            if now == previous:
                break
            previous = now
        taken = total - await left()
        # Client receive buffer (SO_RCVBUF, doubled by Linux) + the server's send buffer
        # (autotuned up to tcp_wmem max) + write_buffer_limit + the window being written.
        bound = 2 * 64 * 1024 + _tcp_buffer_max("tcp_wmem") + 64 * 1024 + 2 * 20 * len(body)
        assert taken * len(body) <= bound, f"server took {taken} messages from Redis"
        assert total - taken > total // 2
        await ws.close()


async def test_v1_window_bounds_unacked(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node(window=5)
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=60)
    for i in range(20):
        await queues.send_message(alice.user_id, f"m{i}")
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    first = [await recv_type(ws, "message") for _ in range(5)]
    with pytest.raises(TimeoutError):
        await recv_type(ws, "message", timeout=0.5)
    attrs = await queues.get_queue_attributes(alice.user_id)
    assert attrs.hiddenmsgs == 5
    await ws.send_str(f"/ack/{alice.user_id}/{first[0]['id']}")
    nxt = await recv_type(ws, "message")
    assert nxt["message"] == "m5"
    await ws.close()


async def test_send_command_and_authorization(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    bob = await make_user()
    alice = await make_user(publish=(bob.user_id,))
    await queues.create_queue(bob.user_id)
    ws = await connect(http, node, alice)
    await ws.send_str(f"/send/{bob.user_id} hello bob")
    sent = await recv_type(ws, "sent")
    await ws.send_str("/send/someone-else hi")
    err = await recv_type(ws, "error")
    assert err["code"] == "forbidden"
    msg = await queues.receive_message(bob.user_id)
    assert msg is not None and (msg.id, msg.message) == (sent["id"], "hello bob")
    await ws.close()


async def test_graceful_close_releases_in_flight_and_sends_1001(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=300)
    await queues.send_message(alice.user_id, "in flight")
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    await recv_type(ws, "message")
    assert (await queues.get_queue_attributes(alice.user_id)).hiddenmsgs == 1
    closing = asyncio.create_task(node.close())
    assert await recv_close(ws) == 1001
    async with asyncio.timeout(5):
        await closing
    attrs = await queues.get_queue_attributes(alice.user_id)
    assert (attrs.msgs, attrs.hiddenmsgs) == (1, 0)  # visible again at once
    with pytest.raises(aiohttp.ClientConnectionError):  # the listener is gone
        async with http.get(f"{node.http_url}/healthz"):
            pass


async def test_heartbeat_drops_dead_peer_and_releases_its_messages(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node(heartbeat=0.4)
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=300)
    await queues.send_message(alice.user_id, "held by a peer that dies")
    # aiohttp's client answers pings only inside receive(): one that stops reading is dead.
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    await recv_type(ws, "message")

    async def released() -> bool:
        attrs = await queues.get_queue_attributes(alice.user_id)
        return (attrs.msgs, attrs.hiddenmsgs) == (1, 0)

    assert not await released()
    await wait_for(released, timeout=5)  # heartbeat timeout, not the 300 s vt
    async with http.get(f"{node.http_url}/metrics") as resp:
        text = await resp.text()
    assert "wsmq_connections 0.0" in text
    assert 'wsmq_closes_total{code="1006"} 1.0' in text  # dropped (aborted), not closed
    await ws.close()


async def test_heartbeat_keeps_a_silent_live_peer_and_answers_its_pings(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    """The node pings a socket that sends nothing (one sweeper for the whole node); a peer
    that answers stays however long it is silent, and the node answers the peer's pings."""
    node = await start_node(heartbeat=0.4)
    alice = await make_user()
    ws = await connect(http, node, alice, autoping=False)  # the test sees and answers pings
    await subscribe(ws, alice.user_id)
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.0  # 5 intervals; a peer not answering is dropped within 0.6 s
    pings = 0
    while (left := until - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        assert msg.type is aiohttp.WSMsgType.PING, (msg.type, msg.data)
        pings += 1
        await ws.pong(msg.data)
    assert pings >= 3  # about one per interval of silence
    await ws.ping(b"are you there")
    msg = await ws.receive(timeout=5)
    while msg.type is aiohttp.WSMsgType.PING:  # a heartbeat ping may come first
        await ws.pong(msg.data)
        msg = await ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"are you there")
    await queues.send_message(alice.user_id, "after 2 s of silence")
    msg = await ws.receive(timeout=5)
    while msg.type is aiohttp.WSMsgType.PING:
        await ws.pong(msg.data)
        msg = await ws.receive(timeout=5)
    assert json.loads(msg.data)["message"] == "after 2 s of silence"
    await ws.close()


async def test_user_store_given_to_serve_mongomock(
    redis_url: str, http: aiohttp.ClientSession, queues: Queues
) -> None:
    """``serve(user_store=...)`` with a MongoDB store (mongomock-motor, the only fake)."""
    from mongomock_motor import AsyncMongoMockClient

    from wsmq.auth import MongoUserStore
    from wsmq.gateway import serve
    from wsmq.testing.users import CHEAP_HASHER, make_users

    from .conftest import SECRET

    store = MongoUserStore(AsyncMongoMockClient()["wsmq"], hasher=CHEAP_HASHER)
    (cred,) = await make_users(store, names=["mongo-user"], secret=SECRET)
    node = await serve(redis_url=redis_url, secret=SECRET, user_store=store, port=0)
    try:
        ws = await connect(http, node, cred)
        await subscribe(ws, cred.user_id)
        await queues.send_message(cred.user_id, "from mongo land")
        assert (await recv_type(ws, "message"))["message"] == "from mongo land"
        async with http.get(f"{node.http_url}/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["checks"] == {"redis": "ok", "users": "ok"}
        await ws.close()
    finally:
        await node.close()

"""Acks through a real node: one frame acking many messages, replies per id, nothing lost."""

from __future__ import annotations

from typing import Any

import aiohttp

from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv, subscribe, wait_for


async def test_one_ack_frame_confirms_many_messages(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    alice = await make_user("alice")
    q = alice.user_id
    await queues.create_queue(q, vt=60)
    await queues.send_messages(q, [f"m{i}" for i in range(50)])
    ws = await connect(http, node, alice)
    await subscribe(ws, q)
    ids: list[str] = []
    while len(ids) < 50:
        frame = await recv(ws)
        assert frame["type"] == "message"
        ids.append(frame["id"])
    unknown = "0" * 32
    await ws.send_str(f"/ack/{q}/{','.join([*ids, unknown])}")
    acked: set[str] = set()
    errors: list[dict[str, Any]] = []
    while len(acked) + len(errors) < 51:
        frame = await recv(ws)
        if frame["type"] == "acked":
            acked.add(frame["id"])
        else:
            errors.append(frame)
    assert acked == set(ids)
    assert [(e["type"], e["code"], e["id"]) for e in errors] == [
        ("error", "unknown_message", unknown)
    ]

    async def emptied() -> bool:
        attrs = await queues.get_queue_attributes(q)
        return attrs.msgs == 0

    await wait_for(emptied)  # deleted, not waiting for the 60 s vt
    assert not ws.closed


async def test_a_bad_id_in_an_ack_frame_rejects_the_whole_frame(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    alice = await make_user("alice")
    q = alice.user_id
    await queues.create_queue(q, vt=60)
    await queues.send_message(q, "kept")
    ws = await connect(http, node, alice)
    await subscribe(ws, q)
    frame = await recv(ws)
    await ws.send_str(f"/ack/{q}/{frame['id']},not-an-id")
    err = await recv(ws)
    assert (err["type"], err["code"]) == ("error", "invalid_id")
    attrs = await queues.get_queue_attributes(q)
    assert (attrs.msgs, attrs.hiddenmsgs) == (1, 1)  # nothing was deleted

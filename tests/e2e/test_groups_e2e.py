"""Groups through real nodes: ``/send/<group>`` on one node reaches the subscribers of every
member queue, on nodes of their own, once each (single, cluster and sentinel backends)."""

from __future__ import annotations

import aiohttp

from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv_type, subscribe, wait_for


async def test_send_to_a_group_fans_out_to_every_members_subscriber(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    publisher_node, alice_node, bob_node = (
        await start_node(),
        await start_node(),
        await start_node(),
    )
    alice, bob = await make_user(), await make_user()  # each may subscribe to their own id
    publisher = await make_user(publish=("team",))
    for user in (alice, bob):
        await queues.create_queue(user.user_id)
    await queues.group_add("team", alice.user_id, bob.user_id)

    ws_alice = await connect(http, alice_node, alice)
    ws_bob = await connect(http, bob_node, bob)
    await subscribe(ws_alice, alice.user_id)
    await subscribe(ws_bob, bob.user_id)
    ws_pub = await connect(http, publisher_node, publisher)
    await ws_pub.send_str("/send/team hello team")
    sent = await recv_type(ws_pub, "sent")

    for ws, user in ((ws_alice, alice), (ws_bob, bob)):
        frame = await recv_type(ws, "message")
        assert (frame["queue"], frame["id"], frame["message"]) == (
            user.user_id, sent["id"], "hello team",
        )  # fmt: skip
        await ws.send_str(f"/ack/{user.user_id}/{frame['id']}")
        assert (await recv_type(ws, "acked"))["id"] == frame["id"]

    async def all_settled() -> bool:
        attrs = [await queues.get_queue_attributes(q) for q in ("team", alice.user_id, bob.user_id)]
        return all(a.msgs == 0 for a in attrs)

    await wait_for(all_settled)  # copied once (three copiers ran), acked, nothing left
    for q in (alice.user_id, bob.user_id):
        assert (await queues.get_queue_attributes(q)).totalsent == 1
    for ws in (ws_alice, ws_bob, ws_pub):
        await ws.close()


async def test_a_node_stops_its_copier_and_another_node_copies(
    start_node: StartNode, queues: Queues
) -> None:
    first = await start_node()
    await queues.create_queue("inbox")
    await queues.group_add("g", "inbox")
    await first.close()
    await queues.send_message("g", "while no node runs")
    assert (await queues.get_queue_attributes("g")).msgs == 1  # waits durably in the group
    await start_node()

    async def copied() -> bool:
        return (await queues.get_queue_attributes("inbox")).msgs == 1

    await wait_for(copied)

"""Groups through real nodes: ``/send/<group>`` on one node reaches the subscribers of every
member queue, on nodes of their own, once each (single, cluster and sentinel backends)."""

from __future__ import annotations

import aiohttp

from wsmq.engine.group_copier import GroupCopier
from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv, recv_type, subscribe, wait_for


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
    await queues.groups.add("team", alice.user_id, bob.user_id)

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
    await queues.groups.add("g", "inbox")
    await first.close()
    await queues.send_message("g", "while no node runs")
    assert (await queues.get_queue_attributes("g")).msgs == 1  # waits durably in the group
    await start_node()

    async def copied() -> bool:
        return (await queues.get_queue_attributes("inbox")).msgs == 1

    await wait_for(copied)


async def test_subscribing_to_a_group_is_refused_with_is_group(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    user = await make_user(queues=("news",))
    await queues.create_queue(user.user_id)
    await queues.groups.add("news", user.user_id)
    ws = await connect(http, node, user)
    for frame in ("/subscribe/news", "/subscribe/news device=phone"):
        await ws.send_str(frame)
        error = await recv(ws)
        assert (error["type"], error["code"], error["queue"]) == ("error", "is_group", "news")
        assert "member" in error["detail"]
    # The connection stays usable, the group gets no device, and its messages reach the member.
    await subscribe(ws, user.user_id)
    assert not await queues.redis.exists(queues.keys.devices("news"))
    sent = await queues.send_message("news", "to the member")
    got = await recv_type(ws, "message")
    assert (got["queue"], got["id"]) == (user.user_id, sent)
    await ws.close()
    metrics = node.state.metrics.render().decode()
    assert 'wsmq_frames_rejected_total{code="is_group"} 2.0' in metrics


async def test_the_copier_counts_copies_and_missing_members_in_metrics(
    start_node: StartNode, queues: Queues
) -> None:
    node = await start_node()
    for q in ("m1", "m2"):
        await queues.create_queue(q)
    await queues.groups.add("g", "m1", "m2")
    await queues.send_message("g", "one")

    def sample(name: str, label: str) -> float:
        for line in node.state.metrics.render().decode().splitlines():
            if line.startswith(f"{name}{{{label}}} "):
                return float(line.split()[-1])
        return 0.0

    async def copied() -> bool:
        return sample("wsmq_group_copies_total", 'result="new"') == 2.0

    await wait_for(copied)
    # A member queue that does not exist (its name put in the member set by another program).
    await queues.redis.sadd(queues.keys.members("g"), "ghost")
    await queues.send_message("g", "two")

    async def missing() -> bool:
        return sample("wsmq_group_copy_errors_total", 'reason="member_missing"') >= 1.0

    await wait_for(missing)

    async def copied_twice() -> bool:
        return sample("wsmq_group_copies_total", 'result="new"') == 4.0

    await wait_for(copied_twice)  # the existing members got theirs
    for member in ("m1", "m2"):
        assert (await queues.get_queue_attributes(member)).totalsent == 2


async def test_a_node_with_group_copier_off_copies_nothing(
    start_node: StartNode, queues: Queues
) -> None:
    node = await start_node(group_copier=False)
    assert node.copier is None
    await queues.create_queue("inbox")
    await queues.groups.add("g", "inbox")
    await queues.send_message("g", "left to other copiers")
    # Still in the group for a copier of our own: no node copier took it (a copier that ran
    # would have been woken by the send's notification and raced this one).
    assert await GroupCopier(queues).run_once() == 1
    assert (await queues.get_queue_attributes("inbox")).msgs == 1
    assert "wsmq_group_copies_total{" not in node.state.metrics.render().decode()

"""A reserved queue name on a real node: an error frame, and the socket stays open."""

from __future__ import annotations

import aiohttp
import pytest

from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv_type, subscribe


@pytest.mark.backends("single")  # frame parsing, the same on every deployment
async def test_subscribe_and_send_to_QUEUES_get_an_error_frame(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node(create_queues=True)
    alice = await make_user(queues=("QUEUES_OK",))
    ws = await connect(http, node, alice)
    for frame in ("/subscribe/QUEUES", "/send/QUEUES hello"):
        await ws.send_str(frame)
        err = await recv_type(ws, "error")
        assert err["code"] == "invalid_queue" and "QUEUES is reserved" in err["detail"]
    await subscribe(ws, alice.user_id)  # still open and working
    assert "QUEUES" not in await queues.list_queues()
    await ws.close()

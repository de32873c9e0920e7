"""``/send`` through a real node: queue errors become their wire codes (one table), and every
reply reads with the client's decoder."""

from __future__ import annotations

import aiohttp

from wsmq.protocol.server_frames import ErrorFrame, Sent, decode_server_frame
from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect


async def test_send_errors_map_to_wire_codes(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    node = await start_node()
    alice = await make_user(publish=("small", "missing"))
    await queues.create_queue("small", maxsize=1024)
    ws = await connect(http, node, alice)

    async def reply() -> object:
        msg = await ws.receive(timeout=5)
        return decode_server_frame(msg.data)

    await ws.send_str("/send/small hello")
    sent = await reply()
    assert isinstance(sent, Sent) and sent.queue == "small"
    await ws.send_str("/send/small " + "x" * 1025)
    too_long = await reply()
    assert isinstance(too_long, ErrorFrame)
    assert (too_long.code, too_long.queue) == ("message_too_long", "small")
    await ws.send_str("/send/missing hello")
    missing = await reply()
    assert isinstance(missing, ErrorFrame)
    assert (missing.code, missing.queue) == ("queue_not_found", "missing")
    await ws.close()

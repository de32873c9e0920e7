"""The settle batcher on its own: what a send that waits for the socket does to the batches."""

from __future__ import annotations

import asyncio

from wsmq.client.settle import Settler


async def test_settles_queued_while_a_send_waits_go_out_after_it() -> None:
    sent: list[str] = []
    drained = asyncio.Event()

    async def send(frame: str) -> None:
        if not sent:
            sent.append(frame)
            await drained.wait()  # the first write waits for the socket to drain
        else:
            sent.append(frame)

    settler = Settler(send)
    first = settler.add("ack", "q", "a", "", confirm=True)
    async with asyncio.timeout(5):
        while not sent:
            await asyncio.sleep(0)  # the per-turn flush task starts its first send
    second = settler.add("nack", "q", "b", " 5", confirm=True)  # while that send waits
    drained.set()
    await settler.drain(5)
    assert sent == ["/ack/q/a", "/nack/q/b 5"]
    settler.answered("q", "a", "ack", True)
    settler.answered("q", "b", None, False)  # an error frame naming the id
    assert first is not None and second is not None
    assert (await first, await second) == (True, False)

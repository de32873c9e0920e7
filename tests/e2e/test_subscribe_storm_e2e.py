"""A subscribe storm (every socket subscribes at once) is set up a bounded number at a time."""

from __future__ import annotations

import asyncio

import aiohttp

from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv


async def test_a_subscribe_storm_is_gated_and_every_socket_is_served(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, queues: Queues
) -> None:
    # gate: 32 // 4 = 8 subscribes at once; one user holds all 40 sockets
    node = await start_node(redis_pool_size=32, max_connections_per_user=0)
    state = node.state
    assert state.subscribe_gate._value == 8
    names = [f"storm{i}" for i in range(40)]
    user = await make_user("storm", queues=tuple(names))
    for q in names:
        await queues.create_queue(q)
    inside = peak = 0
    ensure_queue = state.ensure_queue

    async def counting(qname: str) -> str | None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        try:
            await asyncio.sleep(0.01)  # a slow Redis: subscribes pile up at the gate
            return await ensure_queue(qname)
        finally:
            inside -= 1

    state.ensure_queue = counting  # type: ignore[method-assign]
    sockets = [await connect(http, node, user, v1=False) for _ in names]
    for ws, q in zip(sockets, names, strict=True):
        await ws.send_str(f"/subscribe/{q}")  # legacy: no reply to wait for
    for q in names:
        await queues.send_message(q, f"to {q}")
    for ws, q in zip(sockets, names, strict=True):
        assert await recv(ws) == {"message": f"to {q}"}
    assert 1 < peak <= 8

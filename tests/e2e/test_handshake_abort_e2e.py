"""A real node whose clients give up during the upgrade: counted, logged at debug, never an
ERROR traceback (one per abandoned handshake would be log volume anyone can cause)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from .conftest import StartNode

pytestmark = pytest.mark.backends("single")

UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: wsmq.v1\r\n\r\n"
)
N = 20


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_handshakes_abandoned_during_the_upgrade_log_no_error(
    start_node: StartNode, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.DEBUG)
    entered = 0
    all_in = asyncio.Event()
    gate = asyncio.Event()

    async def slow_authenticate(_request: web.Request) -> object:
        # A slow user store: the clients leave while it answers, then it answers.
        nonlocal entered
        entered += 1
        if entered == N:
            all_in.set()
        await gate.wait()
        return {"user_id": "u1", "queues": ["q"]}

    node = await start_node(authenticate=slow_authenticate)
    assert node.port is not None
    writers = []
    for _ in range(N):
        async with asyncio.timeout(5):
            _reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        writer.write(UPGRADE)
        writers.append(writer)
    async with asyncio.timeout(10):
        await all_in.wait()
    for writer in writers:
        if how == "reset":
            writer.transport.abort()
        else:
            writer.close()
    for writer in writers:
        async with asyncio.timeout(5):
            await writer.wait_closed()
    gate.set()

    def aborted() -> float:
        for line in node.state.metrics.render().decode().splitlines():
            if line.startswith('wsmq_handshakes_total{result="aborted"} '):
                return float(line.split()[-1])
        return 0.0

    async with asyncio.timeout(10):
        while aborted() < N:  # the handlers finish once the store answers
            await asyncio.sleep(0.02)
    assert aborted() == N
    assert not node.state.connections
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert sum(getattr(r, "event", None) == "handshake_abort" for r in caplog.records) == N

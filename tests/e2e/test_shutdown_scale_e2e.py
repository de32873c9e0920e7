"""SIGTERM to a ``wsmq serve`` process holding thousands of idle sockets: every socket gets its
1001 close, and the process exits within ``shutdown_timeout`` (plus interpreter exit), even
though no client answers the close (a peer's reply is awaited only for a bounded grace).

3,000 sockets by default; ``WSMQ_CHAOS=1`` runs 15,000.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import struct
import time

import aiohttp
import pytest

from tests.gateway.wsframes import client_frame
from wsmq.queue import Queues

from .conftest import MakeUser, SpawnNode

pytestmark = pytest.mark.backends("single")

SOCKETS = 15_000 if os.environ.get("WSMQ_CHAOS") == "1" else 3_000
SHUTDOWN_TIMEOUT = 3.0
#: Interpreter exit after "shutdown complete" (~0.3 s with 3k sockets, ~1.3 s with 15k), and
#: writing the close frames (CPU bound, ~75 µs a socket) past the sockets' grace.
EXIT_MARGIN = 3.0 if SOCKETS > 3_000 else 2.0

UPGRADE = (
    "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: wsmq.v1\r\n\r\n"
)

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))  # the node inherits it


async def _open(port: int, gate: asyncio.Semaphore, token: str, queue: str | None) -> Stream:
    """A lean client: the handshake on a bare stream (and a subscribe), nothing read after."""
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=65536)
        request = UPGRADE.format(host=f"127.0.0.1:{port}")
        if token:
            request = request.replace("\r\n\r\n", f"\r\n{token}\r\n\r\n")
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        if queue is not None:
            writer.write(client_frame(f"/subscribe/{queue}".encode()))
        return reader, writer


async def _close_code(reader: asyncio.StreamReader) -> int:
    """Skip the text frames (replies, deliveries) to the close frame; its code."""
    while True:
        first, length = await reader.readexactly(2)
        length &= 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(length)
        if first == 0x88:  # FIN + close
            (code,) = struct.unpack("!H", payload[:2])
            return int(code)
        assert first == 0x81, hex(first)  # FIN + text


@pytest.mark.parametrize("sockets", ["idle", "subscribed"])
async def test_sigterm_closes_every_socket_with_1001_within_shutdown_timeout(
    spawn_node: SpawnNode, redis_url: str, make_user: MakeUser, queues: Queues, sockets: str
) -> None:
    """``idle``: no token (waiting for ``/auth``); ``subscribed``: each socket subscribed to
    one of 50 queues, holding unacked messages the shutdown releases."""
    _raise_fd_limit(SOCKETS + 1000)  # per process: the clients here, the node (inherits it)
    names = [f"sq{i}" for i in range(50)]
    token = ""
    if sockets == "subscribed":
        user = await make_user(queues=tuple(names))
        token = f"x-token: {user.x_token}\r\nx-access-token: {user.access_token}"
        for name in names:
            await queues.create_queue(name)
            for i in range(20):
                await queues.send_message(name, f"m{i}")
    node = await spawn_node(
        redis_url,
        "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), "--auth-deadline", "600",
        "--heartbeat", "0", "--log-level", "info", "--max-connections-per-user", "0",
        "--header-timeout", "60",
    )  # fmt: skip
    port = node.port
    gate = asyncio.Semaphore(200)
    async with asyncio.timeout(60 + SOCKETS / 100):
        streams = await asyncio.gather(
            *(
                _open(port, gate, token, names[i % len(names)] if token else None)
                for i in range(SOCKETS)
            )
        )
    if token:  # every subscription is live (wsmq_subscriptions) before the signal
        await _subscribed(node.http_url, SOCKETS)
    try:
        started = time.monotonic()
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(SHUTDOWN_TIMEOUT + EXIT_MARGIN + 5):
            codes = await asyncio.gather(
                *(_close_code(r) for r, _ in streams), return_exceptions=True
            )
            assert await node.wait() == 0
        took = time.monotonic() - started
        failed = [c for c in codes if c != 1001]
        assert not failed, (len(failed), failed[:5], node.log_tail())
        print(f"SIGTERM to exit: {took:.2f} s")
        assert took < SHUTDOWN_TIMEOUT + EXIT_MARGIN, (took, node.log_tail())
        log = node.log_text()
        assert "shutdown complete" in log
        assert "Traceback" not in log and " ERROR " not in log, node.log_tail()
    finally:
        for _, writer in streams:
            writer.transport.abort()


async def _subscribed(http_url: str, expected: int) -> None:
    """Wait (bounded) until the node's ``wsmq_subscriptions`` gauge reaches ``expected``."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(60):
        while True:
            async with http.get(f"{http_url}/metrics") as resp:
                text = await resp.text()
            for line in text.splitlines():
                if line.startswith("wsmq_subscriptions ") and float(line.split()[1]) >= expected:
                    return
            await asyncio.sleep(0.2)

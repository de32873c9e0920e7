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

import pytest

from .conftest import SpawnNode

pytestmark = pytest.mark.backends("single")

SOCKETS = 15_000 if os.environ.get("WSMQ_CHAOS") == "1" else 3_000
SHUTDOWN_TIMEOUT = 3.0
#: Interpreter exit after "shutdown complete" (the node's own log shows well under 1 s).
EXIT_MARGIN = 2.0

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


async def _open(port: int, gate: asyncio.Semaphore) -> Stream:
    """A lean client: the handshake on a bare stream, nothing read afterwards."""
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
        writer.write(UPGRADE.format(host=f"127.0.0.1:{port}").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        return reader, writer


async def _close_code(reader: asyncio.StreamReader) -> int:
    """The first frame the server sends must be a close; its code."""
    first, length = await reader.readexactly(2)
    assert first == 0x88, hex(first)  # FIN + close
    payload = await reader.readexactly(length & 0x7F)
    (code,) = struct.unpack("!H", payload[:2])
    return int(code)


async def test_sigterm_closes_every_idle_socket_with_1001_within_shutdown_timeout(
    spawn_node: SpawnNode, redis_url: str
) -> None:
    _raise_fd_limit(SOCKETS + 1000)  # per process: the clients here, the node (inherits it)
    node = await spawn_node(
        redis_url,
        "--shutdown-timeout", str(SHUTDOWN_TIMEOUT), "--auth-deadline", "600",
        "--heartbeat", "0", "--log-level", "info",
    )  # fmt: skip
    port = node.port
    gate = asyncio.Semaphore(200)
    async with asyncio.timeout(60 + SOCKETS / 100):
        streams = await asyncio.gather(*(_open(port, gate) for _ in range(SOCKETS)))
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

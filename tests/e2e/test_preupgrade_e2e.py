"""A real node before and around the upgrade: header deadline, cap on connections not yet
upgraded, oversized headers, unmasked frames, the frame-size edge, pings and the per-user cap.

Every test runs on the single Redis backend only: none of this touches Redis, so the other
deployments would run the same test again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import os
import struct

import aiohttp
import pytest

from tests.gateway.wsframes import client_frame
from wsmq.gateway import Gateway
from wsmq.settings import Settings

from .conftest import MakeUser, StartNode, connect, recv, recv_close

pytestmark = pytest.mark.backends("single")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_raw(node: Gateway) -> Streams:
    assert node.port is not None
    async with asyncio.timeout(5):
        return await asyncio.open_connection("127.0.0.1", node.port)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        data = b""
        while chunk := await reader.read(65536):
            data += chunk
        return data


async def http_get(node: Gateway, path: str) -> bytes:
    """One raw ``GET`` on a new connection: the whole answer (the server closes)."""
    reader, writer = await open_raw(node)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    try:
        return await closed_by_server(reader, 5)
    finally:
        writer.close()


# --- header deadline ------------------------------------------------------------------------


@pytest.mark.parametrize("sends", ["nothing", "half a request", "a header at a time"])
async def test_a_connection_without_complete_headers_is_closed_after_header_timeout(
    start_node: StartNode, sends: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    node = await start_node(header_timeout=0.5)
    reader, writer = await open_raw(node)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def dribble() -> None:
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        for i in range(100):  # one header line every 0.1 s: ~10 s in all without a deadline
            await asyncio.sleep(0.1)
            writer.write(f"X-Slow-{i}: 1\r\n".encode())

    if sends == "half a request":
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    pacer = asyncio.create_task(dribble()) if sends == "a header at a time" else None
    try:
        assert await closed_by_server(reader, 5) == b""
    finally:
        if pacer is not None:
            pacer.cancel()
        writer.close()
    assert loop.time() - started >= 0.4
    # A complete request in time is served as always.
    assert b" 200 " in (await http_get(node, "/healthz")).split(b"\r\n")[0]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.__dict__.get("event") == "header_timeout" for r in caplog.records)


async def test_the_deadline_ends_with_the_headers_and_a_websocket_lives_on(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node(header_timeout=0.3)
    cred = await make_user()
    ws = await connect(http, node, cred)
    await asyncio.sleep(0.6)  # twice the header timeout: nothing may close the WebSocket
    await ws.send_str(f"/subscribe/{cred.user_id}")
    assert await recv(ws) == {"type": "subscribed", "queue": cred.user_id}
    await ws.close()


# --- cap on connections not yet upgraded ----------------------------------------------------


async def test_connections_over_the_cap_get_503_at_once_and_slots_free_up(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = await start_node(header_timeout=30.0, max_http_connections=20)
    cred = await make_user()
    upgraded = [await connect(http, node, cred) for _ in range(3)]  # WebSockets do not count
    silent = [await open_raw(node) for _ in range(20)]
    reader, writer = await open_raw(node)
    answer = await closed_by_server(reader, 5)  # at once: not after the 30 s deadline
    writer.close()
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    silent[0][1].close()
    status = b""
    for _ in range(100):  # the server sees the close soon after
        with contextlib.suppress(ConnectionResetError):  # refused while the request came in
            status = (await http_get(node, "/healthz")).split(b"\r\n")[0]
        if b" 200 " in status:
            break
        await asyncio.sleep(0.05)
    assert b" 200 " in status
    for _, w in silent[1:]:
        w.close()
    for ws in upgraded:
        await ws.close()
    # Refusals are one throttled warning, never a traceback (aiohttp's request task included).
    gc.collect()  # a task that failed unretrieved is reported when collected
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.__dict__.get("event") for r in warnings] == ["http_connections_full"]


async def test_an_oversized_header_is_neither_echoed_nor_logged(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node = await start_node()
    secret = "sessionsecret" + "A1" * 5000  # longer than max_header_size (8190)
    reader, writer = await open_raw(node)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: {secret}\r\n\r\n".encode())
    answer = await closed_by_server(reader, 5)
    writer.close()
    assert b" 400 " in answer.split(b"\r\n")[0], answer[:200]
    assert b"sessionsecret" not in answer and b"A1A1" not in answer
    assert b"8190 bytes" in answer
    text = "\n".join(r.getMessage() + str(r.exc_info) + str(r.exc_text) for r in caplog.records)
    assert "sessionsecret" not in text and "A1A1" not in text
    assert "Traceback" not in caplog.text


# --- frames ---------------------------------------------------------------------------------


async def raw_websocket(node: Gateway, headers: dict[str, str]) -> Streams:
    """A WebSocket handshake over a raw socket (101 read), for frames no client library
    would send."""
    reader, writer = await open_raw(node)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        "Host: x",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Protocol: wsmq.v1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next frame from the server: (opcode, payload)."""
    async with asyncio.timeout(10):
        first, second = await reader.readexactly(2)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        return first & 0x0F, await reader.readexactly(n)


async def test_an_unmasked_client_frame_closes_with_1002(
    start_node: StartNode, make_user: MakeUser
) -> None:
    node = await start_node()
    cred = await make_user()
    reader, writer = await raw_websocket(node, cred.headers)
    try:
        # Masked frames work, split across writes at every byte of their header.
        frame = client_frame(f"/subscribe/{cred.user_id}".encode())
        for i in range(len(frame)):
            writer.write(frame[i : i + 1])
            await writer.drain()
        assert await server_frame(reader) == (
            0x1,
            f'{{"type":"subscribed","queue":"{cred.user_id}"}}'.encode(),
        )
        writer.write(client_frame(b"/unsubscribe/" + cred.user_id.encode(), masked=False))
        opcode, payload = await server_frame(reader)
        assert opcode == 0x8
        assert struct.unpack("!H", payload[:2])[0] == 1002
    finally:
        writer.close()


async def test_a_frame_of_exactly_max_frame_size_is_accepted_one_more_byte_closes_1009(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node()
    limit = node.settings.max_frame_size
    assert limit == 65536
    cred = await make_user()
    ws = await connect(http, node, cred)
    await ws.send_str("x" * limit)  # not a command, but within the limit: an error frame
    reply = await recv(ws)
    assert reply["type"] == "error" and reply["code"] != "frame_too_large", reply
    await ws.send_str("x" * (limit + 1))
    assert await recv_close(ws) == 1009


async def test_pings_count_toward_the_rate_limit(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node(rate_limit=1.0, rate_burst=5)
    cred = await make_user()
    ws = await connect(http, node, cred, autoping=False)
    for _ in range(10):
        await ws.ping()
    assert await recv_close(ws) == 4429


async def test_one_user_has_at_most_32_sockets_by_default(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    assert Settings().max_connections_per_user == 32
    node = await start_node()
    cred = await make_user()
    sockets = [await connect(http, node, cred) for _ in range(32)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(http, node, cred)
    assert refused.value.status == 429
    for ws in sockets:
        await ws.close()

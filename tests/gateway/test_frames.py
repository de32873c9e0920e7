"""Batched text frames (``wsmq.gateway.frames``): byte-exact framing, real sockets, fallback."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from wsmq.gateway.frames import FrameBatchWriter, frame_text

Payloads = list[bytes]
MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_frame_text_header_follows_rfc6455(size: int) -> None:
    payload = b"x" * size
    frame = frame_text(payload)
    assert frame[0] == 0x81  # FIN + text, no RSV bits
    assert frame[1] & 0x80 == 0  # servers never mask
    if size < 126:
        assert frame[1] == size and frame[2:] == payload
    elif size < 65536:
        assert frame[1] == 126 and struct.unpack("!H", frame[2:4])[0] == size
        assert frame[4:] == payload
    else:
        assert frame[1] == 127 and struct.unpack("!Q", frame[2:10])[0] == size
        assert frame[10:] == payload


def _payloads() -> Payloads:
    # Sizes across every header form, multi-byte UTF-8 and an empty frame.
    sizes = [0, 5, 125, 126, 300, 65535, 65536, 70_000]
    out = [f"{i}:".encode() + "é🙂".encode() * (n // 6) for i, n in enumerate(sizes)]
    out += [f"small-{i}".encode() for i in range(300)]
    return out


async def _serve_batch(
    aiohttp_client: MakeClient, payloads: Payloads, *, compress: bool
) -> tuple[list[str], list[bool], list[int]]:
    """A real server writes ``payloads`` with one ``send_texts``; a real client reads them."""
    fast: list[bool] = []
    written: list[int] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=compress)
        await ws.prepare(request)
        writer = FrameBatchWriter(ws)
        fast.append(writer.fast)
        written.append(await writer.send_texts(payloads))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    got: list[str] = []
    async with asyncio.timeout(10):
        ws = await client.ws_connect("/ws", compress=15 if compress else 0)
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT
            got.append(msg.data)
    return got, fast, written


async def test_one_write_carries_every_frame_intact_and_in_order(
    aiohttp_client: MakeClient,
) -> None:
    payloads = _payloads()
    got, fast, written = await _serve_batch(aiohttp_client, payloads, compress=False)
    # The installed aiohttp must take the raw path: if an upgrade breaks it, this fails.
    assert fast == [True]
    assert written == [len(payloads)]
    assert got == [p.decode() for p in payloads]


async def test_permessage_deflate_falls_back_to_send_str(aiohttp_client: MakeClient) -> None:
    payloads = _payloads()[:20]
    got, fast, written = await _serve_batch(aiohttp_client, payloads, compress=True)
    assert fast == [False]
    assert written == [len(payloads)]
    assert got == [p.decode() for p in payloads]


async def test_a_closing_socket_takes_nothing(aiohttp_client: MakeClient) -> None:
    results: list[int] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert request.transport is not None
        request.transport.close()  # closing: neither path may claim a write
        results.append(await FrameBatchWriter(ws).send_texts([b"a", b"b"]))
        done.set()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    async with asyncio.timeout(10):
        ws = await client.ws_connect("/ws")
        await done.wait()
        await ws.close()
    assert results == [0]


async def test_ping_is_written_raw_and_the_client_sees_a_ping(aiohttp_client: MakeClient) -> None:
    """The heartbeat's ping: two bytes straight to the transport, a real PING for the client;
    ``False`` (the caller falls back to ``ws.ping()``) when aiohttp's writer is out of reach."""
    results: list[bool] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        results.append(FrameBatchWriter(ws).ping())
        await ws.receive()  # until the client closes
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/", autoping=False) as ws:
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PING, b"")
    assert results == [True]
    assert FrameBatchWriter(web.WebSocketResponse()).ping() is False  # not prepared: no writer

"""``release_http_state``: an upgraded connection lets go of aiohttp's HTTP parser and request
queue, and keeps working (frames both ways, closes from either side) without aiohttp errors."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from wsmq._compat.aiohttp_release import VERIFIED, release_http_state, supported

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


#: An aiohttp older than every verified one: the lowest-bound run (scripts/test-lowest), where
#: the documented fallback (nothing released) is the expected behaviour.
OLDER_THAN_VERIFIED = _minor(aiohttp.__version__) < min(_minor(v) for v in VERIFIED)


def test_the_installed_aiohttp_is_one_the_release_was_checked_against() -> None:
    """Fails after an aiohttp upgrade: read its ``web_protocol.RequestHandler`` (uses of
    ``_parser`` and ``_messages`` after an accepted upgrade), then add the version to
    ``VERIFIED`` — or memory per socket silently grows by ~2.5 KiB."""
    if OLDER_THAN_VERIFIED:
        pytest.skip(f"aiohttp {aiohttp.__version__} predates {VERIFIED}: the fallback applies")
    assert supported(), f"aiohttp {aiohttp.__version__} not in {VERIFIED}"


class Server:
    def __init__(self) -> None:
        self.released: list[bool] = []
        self.handler_done = asyncio.Event()
        self.close_from_server = False

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            self.released.append(release_http_state(request))  # plain HTTP: left alone
            return web.Response(text="plain")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        released = release_http_state(request)
        self.released.append(released)
        handler: Any = request.protocol
        if released:
            assert handler._parser is None and not handler._messages
            assert len(handler._messages) == 0
        try:
            async for msg in ws:
                if msg.data == "bye":
                    self.close_from_server = True
                    await ws.close(code=4000, message=b"server closes")
                    break
                await ws.send_str(f"echo {msg.data}")
        finally:
            self.handler_done.set()
        return ws


@pytest.mark.parametrize("closer", ["client", "server"])
async def test_a_released_connection_works_and_closes_cleanly(
    aiohttp_client: MakeClient, caplog: pytest.LogCaptureFixture, closer: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    server = Server()
    app = web.Application()
    app.router.add_get("/", server.handler)
    client = await aiohttp_client(app)
    async with client.get("/") as resp:  # the same app serves plain HTTP: nothing released
        assert await resp.text() == "plain"
    async with client.ws_connect("/") as ws:
        for i in range(3):
            await ws.send_str(f"m{i}")
            assert (await ws.receive(timeout=5)).data == f"echo m{i}"
        if closer == "server":
            await ws.send_str("bye")
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 4000
        else:
            await ws.close()
    async with asyncio.timeout(5):
        await server.handler_done.wait()
    assert server.released == [False, supported()]  # an older aiohttp: nothing released
    assert server.close_from_server is (closer == "server")
    # The connection after the handler: another request on a new connection still works,
    # and aiohttp logged no error for the released one.
    async with client.get("/") as resp:
        assert resp.status == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_an_unverified_aiohttp_is_left_alone_and_said_once(
    aiohttp_client: MakeClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsmq._compat import aiohttp_release as http_release

    monkeypatch.setattr(http_release, "VERIFIED", ("0.0.",))
    http_release._note_unsupported.cache_clear()
    kept: list[Any] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        handler: Any = request.protocol
        kept.append((release_http_state(request), handler._messages))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.INFO, logger="wsmq.gateway"):
        for _ in range(2):
            async with client.ws_connect("/") as ws:
                await ws.receive(timeout=5)
    assert [released for released, _ in kept] == [False, False]
    assert all(isinstance(queue, deque) for _, queue in kept)  # untouched
    notes = [r for r in caplog.records if getattr(r, "event", "") == "http_release_unsupported"]
    assert len(notes) == 1 and "~2.5 KiB more" in notes[0].getMessage()
    http_release._note_unsupported.cache_clear()

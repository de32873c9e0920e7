"""A scripted wsmq node: a real aiohttp WebSocket server on a real port, driven by the test."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from wsmq.backoff import Backoff

STEP = 5.0  # seconds any single scripted step may take before the test fails


@dataclass(eq=False)
class Conn:
    """One accepted WebSocket: what it received, and how to answer."""

    ws: web.WebSocketResponse
    headers: dict[str, str]
    received: asyncio.Queue[str] = field(default_factory=asyncio.Queue)

    async def recv(self) -> str:
        async with asyncio.timeout(STEP):
            return await self.received.get()

    async def send(self, **frame: object) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def close(self, code: int, reason: str = "") -> None:
        async with asyncio.timeout(STEP):
            await self.ws.close(code=code, message=reason.encode())


class ScriptedNode:
    """Accepts WebSockets (``wsmq.v1`` unless ``legacy``) or answers ``reject_status``."""

    def __init__(self, *, legacy: bool = False) -> None:
        self.legacy = legacy
        self.reject_status: int | None = None
        self.accepted: asyncio.Queue[Conn] = asyncio.Queue()
        self.handshakes = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> ScriptedNode:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"ws://127.0.0.1:{port}/"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def accept(self) -> Conn:
        async with asyncio.timeout(STEP):
            return await self.accepted.get()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        if self.reject_status is not None:
            return web.Response(status=self.reject_status)
        ws = web.WebSocketResponse(protocols=() if self.legacy else ("wsmq.v1",))
        await ws.prepare(request)
        conn = Conn(ws, dict(request.headers))
        self.accepted.put_nowait(conn)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                conn.received.put_nowait(msg.data)
        return ws


class GatedBackoff(Backoff):
    """Records every delay and holds each sleep until the test calls :meth:`release`."""

    def __init__(self, base: float = 0.1, cap: float = 1.0) -> None:
        super().__init__(base=base, cap=cap)
        self.delays: list[float] = []
        self.sleeping = asyncio.Event()
        self._gate = asyncio.Event()

    def next(self) -> float:
        delay = super().next()
        self.delays.append(delay)
        return delay

    async def sleep(self) -> None:
        self.next()
        self.sleeping.set()
        await self._gate.wait()
        self._gate.clear()
        self.sleeping.clear()

    def release(self) -> None:
        self._gate.set()

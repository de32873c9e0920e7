"""The benchmark's WebSocket load generators against a scripted aiohttp server on a real port.

The server answers ``/subscribe/<q>`` (with ``subscribed`` in ``wsmq.v1``) and at once floods
the socket with messages, so a client that attaches its reader late, loses frames or acks, or
cuts its result line (20k latency samples are well over a pipe's 64 KiB) fails here instead of
showing up as a slow system in a benchmark run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import WSMsgType, web

from bench import procs

COUNT = 20_000  # the result line carries one latency each: well over 64 KiB


class Flood:
    """A WebSocket endpoint that sends ``COUNT`` messages right after a subscribe."""

    def __init__(self) -> None:
        self.acked: set[str] = set()
        self.ack_frames = 0

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("wsmq.v1",))
        await ws.prepare(request)
        v1 = ws.ws_protocol == "wsmq.v1"
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            frame: str = msg.data
            if frame.startswith("/subscribe/"):
                queue = frame.removeprefix("/subscribe/")
                if v1:
                    await ws.send_str(json.dumps({"type": "subscribed", "queue": queue}))
                for i in range(COUNT):
                    body = f"{time.time() * 1000:.3f}|x"
                    if v1:
                        out = {"type": "message", "queue": queue, "id": f"m{i}", "message": body}
                        await ws.send_str(json.dumps(out))
                    else:
                        await ws.send_str(json.dumps({"message": body}))
            elif frame.startswith("/ack/"):
                self.ack_frames += 1
                self.acked.update(frame.split("/", 3)[3].split(","))
        return ws


@pytest.fixture
async def flood() -> AsyncIterator[tuple[Flood, str]]:
    server = Flood()
    app = web.Application()
    app.router.add_get("/", server.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield server, f"ws://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("kind", ["node", "python"])
@pytest.mark.parametrize("protocol", ["legacy", "v1"])
async def test_load_generator_counts_acks_and_reports_everything(
    kind: str,
    protocol: str,
    flood: tuple[Flood, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WSMQ_BENCH_CLIENT", kind)
    if procs.client_kind() != kind:
        pytest.skip("Node.js or the pinned npm ws package is missing (scripts/test installs it)")
    server, url = flood
    config: dict[str, object] = {
        "clients": [{"url": url, "queue": "q"}],
        "protocol": protocol,
        "latency": True,
        "timeout": 30,
    }
    if protocol == "legacy":
        config["expect"] = COUNT  # ends the run once all arrived
    child = await procs.loadgen(f"{kind} loadgen", config)
    try:
        await child.event("ready", 20)
        if protocol == "v1":  # every message acked (in bulk), then stop the run
            async with asyncio.timeout(20):
                while len(server.acked) < COUNT:
                    await asyncio.sleep(0.05)
            await child.send("stop")
        result = await child.event("result", 40)
    finally:
        await child.stop()
    assert result["count"] == COUNT and result["bad"] == 0 and result["errors"] == []
    assert len(result["latencies"]) == COUNT  # the whole line came through the pipe
    assert all(0 <= lat < 30_000 for lat in result["latencies"])
    if protocol == "v1":
        assert server.acked == {f"m{i}" for i in range(COUNT)}
        assert server.ack_frames < COUNT / 2  # acked in bulk

"""Benchmark peer: a WebSocket bridge over Redis PUBLISH/SUBSCRIBE, with no queue.

The usual alternative to a durable queue (Socket.IO's or Channels' Redis adapters work this way):
each node holds one Redis pub/sub connection, subscribes a channel while at least one of its
sockets wants it, and writes every published message to those sockets as ``{"message": body}``.
At-most-once: a message published while nobody listens, or while a node is down, is gone.
Clients send the same ``/subscribe/<name>`` frame as to wsmq; any handshake headers are accepted
(no authentication: the benchmark measures delivery).

    python -m bench.peers.pubsub_bridge --port 8081 --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import Sequence

import redis.asyncio as aioredis
from aiohttp import WSMsgType, web

QNAME = re.compile(r"^[A-Za-z0-9_-]{1,160}$")


class Bridge:
    """Channel name -> the sockets of this node subscribed to it, fed by one pub/sub link."""

    def __init__(self, redis_url: str) -> None:
        # No socket timeout: a pub/sub read legitimately blocks for as long as nothing is published.
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=None)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.sockets: dict[str, set[web.WebSocketResponse]] = {}
        self.reader: asyncio.Task[None] | None = None
        # redis-py's PubSub opens its connection lazily in the first command: two concurrent
        # first SUBSCRIBEs each open one and all but the last are never read. One at a time.
        self.lock = asyncio.Lock()

    async def subscribe(self, channel: str, ws: web.WebSocketResponse) -> None:
        async with self.lock:
            members = self.sockets.setdefault(channel, set())
            members.add(ws)
            if len(members) == 1:
                await self.pubsub.subscribe(channel)
                if self.reader is None:
                    self.reader = asyncio.create_task(self._read())

    async def unsubscribe_all(self, ws: web.WebSocketResponse, channels: set[str]) -> None:
        async with self.lock:
            for channel in channels:
                members = self.sockets.get(channel)
                if members is None:
                    continue
                members.discard(ws)
                if not members:
                    del self.sockets[channel]
                    await self.pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while True:
            message = await self.pubsub.get_message(timeout=None)
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            frame = json.dumps({"message": message["data"].decode()})
            for ws in tuple(self.sockets.get(channel, ())):
                if not ws.closed:
                    with contextlib.suppress(ConnectionError):
                        await ws.send_str(frame)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        await self.redis.aclose()


BRIDGE = web.AppKey("bridge", Bridge)


async def websocket(request: web.Request) -> web.StreamResponse:
    bridge = request.app[BRIDGE]
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    channels: set[str] = set()
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT or not msg.data.startswith("/subscribe/"):
                await ws.send_str(json.dumps({"error": "unknown_command"}))
                continue
            channel = msg.data[len("/subscribe/") :]
            if not QNAME.match(channel):
                await ws.send_str(json.dumps({"error": "invalid_queue"}))
                continue
            channels.add(channel)
            await bridge.subscribe(channel, ws)
    finally:
        await bridge.unsubscribe_all(ws, channels)
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_app(redis_url: str) -> web.Application:
    app = web.Application()
    app[BRIDGE] = Bridge(redis_url)

    async def close_bridge(app: web.Application) -> None:
        await app[BRIDGE].close()

    app.on_cleanup.append(close_bridge)
    app.router.add_get("/", websocket)
    app.router.add_get("/healthz", healthz)
    return app


async def serve(host: str, port: int, redis_url: str) -> None:
    runner = web.AppRunner(build_app(redis_url), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    sys.stdout.write(json.dumps({"event": "listening", "port": port}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    try:
        import uvloop  # same event loop as wsmq's `fast` extra, so the comparison is fair
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.redis_url))
    else:
        uvloop.run(serve(args.host, args.port, args.redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())

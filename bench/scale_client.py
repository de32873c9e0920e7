"""Lean WebSocket client process of the ``scale`` scenario: ``python -m bench.scale_client @cfg``.

Holds tens of thousands of authenticated ``wsmq.v1`` sockets in one process, each subscribed to
one queue, and reconnects every socket that closes (another node, or the same one once it is
back). A plain :class:`asyncio.Protocol` per socket instead of aiohttp: an aiohttp client
socket costs tens of KiB and a few coroutines, which at 100k sockets on two shared cores
would make the load generator, not the node, the thing measured. It speaks just what an idle
subscriber needs: the upgrade, masked text/pong/close frames (mask key zero: valid, RFC 6455
§5.3 only asks for a mask), and unmasked server frames of any length.

Each socket binds its own source address (``source_ips``, ``127.0.0.x``) with
``IP_BIND_ADDRESS_NO_PORT``, so the kernel picks the port at ``connect()`` per destination:
~28k ports per (source address, node) pair instead of ~28k per source address.

Control: JSON lines on stdout, commands on stdin (see :func:`control`):

- ``{"event": "ready", "connect_s", "connections"}`` once every socket is subscribed;
- ``storm N`` marks every socket now on node ``N``; once each of them has been subscribed again
  on a new connection it prints ``{"event": "storm_done", "t", "per_node", "attempts", ...}``;
- ``count`` prints ``{"event": "count", "received", "subscribed"}``;
- ``stop`` prints ``{"event": "result", "ids": [...]}`` (ids of the messages received) and exits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import resource
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, cast

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
HANDSHAKE_TIMEOUT_S = 15.0
RETRY_MIN_S, RETRY_MAX_S = 0.1, 2.0
ZERO_MASK = b"\x00\x00\x00\x00"


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame (mask key zero: the payload goes out as is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + ZERO_MASK + payload


class Sock(asyncio.Protocol):
    """One WebSocket: upgrade, subscribe, answer pings, ack messages, report when it closes."""

    __slots__ = ("buf", "done", "fleet", "index", "node", "open", "subscribed", "transport")

    def __init__(self, fleet: Fleet, index: int, node: int) -> None:
        self.fleet = fleet
        self.index = index
        self.node = node
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False  # upgraded (101 received)
        self.subscribed = False
        # Set once the connection attempt is over: True subscribed, False failed.
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio subclass
        self.transport.write(self.fleet.requests[self.fleet.user_of(self.index)][self.node])

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            status = buf[: buf.find(b"\r\n")]
            if not status.startswith(b"HTTP/1.1 101"):
                self.fleet.refusals[status.decode(errors="replace")[9:40]] += 1
                self._finish(False)
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            buf = buf[end + 4 :]
            queue = self.fleet.queue_of(self.index)
            self._send(0x1, f"/subscribe/{queue}".encode())
        self.buf = self._frames(buf)

    def _frames(self, buf: bytes) -> bytes:
        """Handle the complete frames in ``buf``; return what is left of an incomplete one."""
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            n = buf[1] & 0x7F
            start = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack_from("!H", buf, 2)[0]
                start = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack_from("!Q", buf, 2)[0]
                start = 10
            if len(buf) < start + n:
                break
            payload = buf[start : start + n]
            buf = buf[start + n :]
            if opcode == 0x1:
                self._text(payload)
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self._send(0x8, payload[:2])
                assert self.transport is not None
                self.transport.close()
                return b""
        return buf

    def _text(self, payload: bytes) -> None:
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "message":
            self.fleet.received.add(frame["id"])
            self._send(0x1, f"/ack/{frame['queue']}/{frame['id']}".encode())
        elif kind == "subscribed" and not self.subscribed:
            self.subscribed = True
            self.fleet.on_subscribed(self)
            self._finish(True)
        elif kind == "error":
            self.fleet.errors[str(frame.get("code"))] += 1
            if not self.subscribed:
                self._finish(False)
                assert self.transport is not None
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))

    def _finish(self, ok: bool) -> None:
        if not self.done.done():
            self.done.set_result(ok)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.fleet.refusals["closed before subscribed"] += 1
        self._finish(False)
        if self.subscribed:
            self.subscribed = False
            self.fleet.on_lost(self)


class Counts(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


class Fleet:
    """The sockets of this process: connects, reconnects and counts them."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.first: int = config["first"]  # global index of this process's first socket
        self.count: int = config["count"]
        self.nodes: list[tuple[str, int]] = [(h, int(p)) for h, p in config["nodes"]]
        self.queues: list[str] = config["queues"]
        self.source_ips: list[str] = config["source_ips"]
        self.initial_nodes: int = int(config.get("initial_nodes", 1))  # sockets spread over them
        self.limit = asyncio.Semaphore(int(config.get("concurrency", 64)))
        key = base64.b64encode(os.urandom(16)).decode()
        # Per user and node: the upgrade request, ready to write (the user is the queue's).
        self.requests: list[list[bytes]] = [
            [
                (
                    f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wsmq.v1\r\n"
                    f"x-token: {user['x-token']}\r\n"
                    f"x-access-token: {user['x-access-token']}\r\n\r\n"
                ).encode()
                for host, port in self.nodes
            ]
            for user in config["users"]
        ]
        self.users = len(self.requests)
        self.sockets: list[Sock | None] = [None] * self.count
        self.subscribed = 0
        self.all_subscribed = asyncio.Event()
        self.received: set[str] = set()
        self.refusals = Counts()
        self.errors = Counts()
        self.attempts = 0
        self.failures = 0
        self.lost = 0
        self.storm_pending: set[int] | None = None
        self.storm_node = -1
        self.storm_started = (0, 0, 0)
        self.refusals_before_storm = Counts()
        self.storm_first_lost = 0.0  # when the first / last marked socket closed
        self.storm_last_lost = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def queue_of(self, index: int) -> str:
        return self.queues[(self.first + index) % len(self.queues)]

    def user_of(self, index: int) -> int:
        # A queue belongs to one user (``scale.assign``): the user of the socket's queue.
        return ((self.first + index) % len(self.queues)) % self.users

    def on_subscribed(self, sock: Sock) -> None:
        self.sockets[sock.index] = sock  # now, not when connect() resumes: it may close first
        self.subscribed += 1
        if self.subscribed == self.count:
            self.all_subscribed.set()
        pending = self.storm_pending
        if pending is not None and sock.index in pending:
            pending.discard(sock.index)
            if not pending:
                self.storm_pending = None
                self.report_storm()

    def on_lost(self, sock: Sock) -> None:
        self.subscribed -= 1
        self.lost += 1
        if self.storm_pending is not None and sock.index in self.storm_pending:
            now = time.time()
            self.storm_first_lost = self.storm_first_lost or now
            self.storm_last_lost = now
        self.all_subscribed.clear()
        if self.sockets[sock.index] is sock:
            self.sockets[sock.index] = None
            self.spawn(self.reconnect(sock.index))

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def connect(self, index: int, node: int) -> bool:
        """One attempt on ``node``: True once subscribed."""
        loop = asyncio.get_running_loop()
        self.attempts += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        proto = Sock(self, index, node)
        ok = False
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((self.source_ips[(self.first + index) % len(self.source_ips)], 0))
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await loop.sock_connect(sock, self.nodes[node])
                await loop.create_connection(lambda: proto, sock=sock)
                ok = await proto.done
        except (OSError, TimeoutError) as exc:
            self.refusals[type(exc).__name__] += 1
        if not ok:
            self.failures += 1
            if proto.transport is not None:
                proto.transport.abort()
            else:
                sock.close()
        return ok

    async def reconnect(self, index: int, only_node: int | None = None) -> None:
        """Connect socket ``index`` until it is subscribed, to ``only_node`` or else a random
        node per attempt, backing off with jitter after each failure."""
        node = only_node if only_node is not None else random.randrange(len(self.nodes))
        delay = RETRY_MIN_S
        while True:
            async with self.limit:
                if await self.connect(index, node):
                    return
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, RETRY_MAX_S)
            if only_node is None:
                node = random.randrange(len(self.nodes))

    def start_storm(self, node: int) -> None:
        self.storm_node = node
        self.storm_pending = {
            i for i, s in enumerate(self.sockets) if s is not None and s.node == node
        }
        self.storm_started = (self.attempts, self.failures, self.lost)
        self.refusals_before_storm = Counts(self.refusals)
        if not self.storm_pending:
            self.storm_pending = None
            self.report_storm()

    def report_storm(self) -> None:
        per_node = [0] * len(self.nodes)
        for s in self.sockets:
            if s is not None:
                per_node[s.node] += 1
        a0, f0, l0 = self.storm_started
        emit(
            {
                "event": "storm_done",
                "t": time.time(),
                "first_lost_t": self.storm_first_lost,
                "last_lost_t": self.storm_last_lost,
                "per_node": per_node,
                "attempts": self.attempts - a0,
                "failures": self.failures - f0,
                "lost": self.lost - l0,
                "refusals": {
                    k: n - self.refusals_before_storm[k]
                    for k, n in self.refusals.items()
                    if n > self.refusals_before_storm[k]
                },
            }
        )


async def stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def control(fleet: Fleet, stdin: asyncio.StreamReader) -> None:
    while True:
        words = (await stdin.readline()).decode().split()
        if not words or words[0] == "stop":
            return
        if words[0] == "storm":
            fleet.start_storm(int(words[1]))
        elif words[0] == "count":
            emit(
                {
                    "event": "count",
                    "received": len(fleet.received),
                    "subscribed": fleet.subscribed,
                    "errors": dict(fleet.errors),
                }
            )


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run(config: dict[str, Any]) -> None:
    fleet = Fleet(config)
    stdin = await stdin_reader()
    started = time.perf_counter()
    for i in range(fleet.count):
        fleet.spawn(fleet.reconnect(i, (fleet.first + i) % fleet.initial_nodes))

    async def ready() -> None:
        await fleet.all_subscribed.wait()
        emit(
            {
                "event": "ready",
                "connect_s": time.perf_counter() - started,
                "connections": fleet.subscribed,
                "attempts": fleet.attempts,
                "refusals": dict(fleet.refusals),
            }
        )

    announce = asyncio.ensure_future(ready())
    # Commands are read from the start: EOF (the harness is gone) ends the process at any time.
    await control(fleet, stdin)
    announce.cancel()
    emit({"event": "result", "ids": sorted(fleet.received), "errors": dict(fleet.errors)})
    for task in list(fleet.tasks):
        task.cancel()
    for s in fleet.sockets:
        if s is not None and s.transport is not None:
            s.transport.abort()


def main() -> int:
    arg = sys.argv[1]
    path = Path(arg[1:])
    config = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())

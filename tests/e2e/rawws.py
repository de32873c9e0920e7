"""A WebSocket client on a plain TCP socket that reads only when the test says so.

aiohttp's client reads its socket in the background; a peer that *stops reading* (a slow or
vanished client whose TCP receive window closes) needs a socket nobody drains. This one does a
real RFC 6455 handshake, sends masked text frames, and reads a frame only inside
:meth:`RawWebSocket.recv_frame`. Its receive buffer is fixed and small (``SO_RCVBUF``: no
kernel autotuning), so what the client side can swallow is known.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from urllib.parse import urlsplit

__all__ = ["OP_CLOSE", "OP_PING", "OP_TEXT", "RawWebSocket"]

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9


class RawWebSocket:
    """One client socket: :meth:`connect`, :meth:`send_text`, :meth:`recv_frame`, :meth:`abort`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(
        cls,
        url: str,
        headers: dict[str, str],
        *,
        protocol: str | None = None,
        rcvbuf: int = 16 * 1024,
        timeout: float = 5.0,
    ) -> RawWebSocket:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: no scaling
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            # A small stream buffer too: the reader stops taking bytes from the kernel soon.
            reader, writer = await asyncio.open_connection(sock=sock, limit=16 * 1024)
            lines = [
                f"GET {parts.path or '/'} HTTP/1.1",
                f"Host: {host}:{port}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
                "Sec-WebSocket-Version: 13",
            ]
            if protocol is not None:
                lines.append(f"Sec-WebSocket-Protocol: {protocol}")
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            writer.transport.abort()
            raise ConnectionError(f"no upgrade: {status!r}")
        return cls(reader, writer)

    async def send_text(self, text: str) -> None:
        """One masked, final text frame (RFC 6455 §5.3: clients mask)."""
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = bytes((0x81, 0x80 | n))
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + mask + masked)
        await self.writer.drain()

    async def recv_frame(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)`` (server frames are unmasked)."""
        async with asyncio.timeout(timeout):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return b0 & 0x0F, await self.reader.readexactly(n)

    async def recv_text(self, timeout: float = 10.0) -> str:
        """The next text frame (pings in between are skipped, unanswered)."""
        while True:
            opcode, payload = await self.recv_frame(timeout)
            if opcode == OP_TEXT:
                return payload.decode()
            if opcode == OP_CLOSE:
                raise ConnectionError(f"closed by the server: {payload!r}")

    def abort(self) -> None:
        self.writer.transport.abort()

"""Write many WebSocket text frames with one transport write (the delivery hot path).

aiohttp writes every frame with its own ``transport.write`` (one ``send()`` syscall while the
socket keeps up). On a loaded 2-core machine each syscall also tends to wake the reader and
lose the CPU to it, so a batch of 100 deliveries cost 100 syscalls and 100 wake-ups.
:class:`FrameBatchWriter` frames a batch of payloads itself (RFC 6455 §5.2: FIN, text opcode,
unmasked server frames, no extensions) and hands the bytes to the transport at once; the
bytes on the wire are exactly what ``send_str`` would have written frame by frame.

The raw write and aiohttp's flow control it reproduces live in
:mod:`wsmq._compat.aiohttp_ws` (fast path ``raw_frames``). Where it is not available (another
aiohttp version, fast paths off) or permessage-deflate was negotiated, :meth:`send_texts`
falls back to one ``send_str`` per frame; ``tests/gateway/test_frames.py`` fails if the
installed aiohttp stops taking the fast path, so an upgrade cannot silently slow delivery down.

:func:`require_masked_frames` closes a socket with 1002 on the first client frame that is not
masked (RFC 6455 §5.1), which aiohttp's reader accepts: :class:`MaskedFramesOnly` follows the
frame boundaries of the bytes received and hands them on to aiohttp's reader, which
:mod:`wsmq._compat.aiohttp_ws` (guard ``masked_frames``) puts it in front of; where that is
not possible it changes nothing (``tests/e2e/test_preupgrade_e2e.py`` fails then).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from aiohttp import WebSocketError, WSCloseCode, web

from wsmq._compat.aiohttp_ws import (
    ErrorSink,
    PayloadParser,
    after_write,
    is_closing,
    raw_writer,
    wrap_payload_parser,
    write_ping,
)

__all__ = [
    "PING_FRAME",
    "FrameBatchWriter",
    "MaskedFramesOnly",
    "frame_text",
    "require_masked_frames",
]

_TEXT_FIN: Final = 0x81
#: An unmasked, final ping frame with no payload (RFC 6455 §5.5.2).
PING_FRAME: Final = b"\x89\x00"
_PACK2: Final = struct.Struct("!BBH").pack
_PACK8: Final = struct.Struct("!BBQ").pack


def frame_text(payload: bytes) -> bytes:
    """One unmasked, final text frame carrying ``payload`` (already UTF-8)."""
    n = len(payload)
    if n < 126:
        return bytes((_TEXT_FIN, n)) + payload
    if n < 65536:
        return _PACK2(_TEXT_FIN, 126, n) + payload
    return _PACK8(_TEXT_FIN, 127, n) + payload


class FrameBatchWriter:
    """Sends text frames for one prepared ``web.WebSocketResponse``."""

    __slots__ = ("_ws",)

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    @property
    def fast(self) -> bool:
        """Whether :meth:`send_texts` writes a batch with one transport write."""
        return raw_writer(self._ws) is not None

    def ping(self) -> bool:
        """Write a ping frame now, without flow control (2 bytes).

        ``False`` when aiohttp's transport is not reachable (another aiohttp version, fast
        paths off): the caller sends it with ``ws.ping()`` instead. A closing socket gets
        nothing (``True``).
        """
        return write_ping(self._ws, PING_FRAME)

    async def send_texts(self, payloads: Sequence[bytes]) -> int:
        """Send each UTF-8 payload as one text frame, in order; return how many were written.

        All of them, or fewer when the socket is closing (``send_str`` raised for the next one;
        the raw path writes all or none).
        """
        writer = raw_writer(self._ws)
        if writer is None:
            written = 0
            for payload in payloads:
                try:
                    await self._ws.send_str(payload.decode())
                except (ConnectionError, RuntimeError):
                    return written
                written += 1
            return written
        if is_closing(writer):
            return 0
        data = b"".join([frame_text(p) for p in payloads])
        writer.transport.write(data)
        wait = after_write(writer, len(data))  # aiohttp's flow control
        if wait is not None:
            await wait
        return len(payloads)


class MaskedFramesOnly:
    """Stands in for aiohttp's WebSocket reader on one connection: checks that every client
    frame is masked, then passes the bytes on unchanged.

    Only frame headers are looked at (2 to 14 bytes per frame); payloads are skipped by length.
    On an unmasked frame the connection fails as on any protocol error of aiohttp's reader:
    the error goes to the message queue (``receive()`` then closes with 1002) and nothing more
    is parsed.
    """

    __slots__ = ("_failed", "_head", "_queue", "_reader", "_skip")

    def __init__(self, reader: PayloadParser, queue: ErrorSink) -> None:
        self._reader = reader
        self._queue = queue
        self._skip = 0  # payload bytes of the current frame still to come
        self._head = b""  # the start of a frame header split across reads
        self._failed = False

    def feed_eof(self) -> None:
        self._reader.feed_eof()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._failed:
            return True, b""
        data = bytes(data)
        bad = self._unmasked_at(data)
        if bad < 0:
            result: tuple[bool, bytes] = self._reader.feed_data(data)
            return result
        self._failed = True
        if bad > 0:  # the frames before it are handled, as aiohttp's reader would
            self._reader.feed_data(data[:bad])
        self._queue.set_exception(
            WebSocketError(WSCloseCode.PROTOCOL_ERROR, "client frame not masked")
        )
        return True, b""

    def _unmasked_at(self, data: bytes) -> int:
        """Where in ``data`` the first unmasked frame starts (``0`` when its header began in
        an earlier read), or ``-1`` when every frame header in it is masked."""
        n = len(data)
        pos = self._skip
        if pos >= n:
            self._skip = pos - n
            return -1
        held = len(self._head)
        if held:  # a header split across reads (rare): join it with this read
            data, pos, self._head = self._head + data, 0, b""
            n = len(data)
        while n - pos >= 2:
            second = data[pos + 1]
            if not second & 0x80:
                return max(pos - held, 0)
            length = second & 0x7F
            size = 6 if length < 126 else 8 if length == 126 else 14
            if n - pos < size:
                break
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            pos += size + length
        if pos >= n:
            self._skip = pos - n
        else:
            self._head = data[pos:]
            self._skip = 0
        return -1


def require_masked_frames(request: web.Request, ws: web.WebSocketResponse) -> bool:
    """Close ``ws`` with 1002 on its first unmasked client frame (call right after
    ``await ws.prepare(request)``). ``False`` when aiohttp's reader could not be wrapped."""
    return wrap_payload_parser(request, ws, MaskedFramesOnly, MaskedFramesOnly)

"""aiohttp's WebSocket writer and reader, reached past the public API.

- ``raw_frames``: write a batch of ready-made frames with one ``transport.write`` and
  aiohttp's own flow control (``WebSocketWriter._limit``, ``_output_size``, ``_closing``,
  ``protocol._paused``/``_drain_helper``), or a ping frame at once. Public path: one
  ``send_str`` per frame, ``ws.ping()``.
- ``masked_frames`` (a guard): put a checker in front of the connection's frame reader
  (``RequestHandler._payload_parser``, errors to ``WebSocketResponse._reader``), which aiohttp
  uses to accept unmasked client frames. Public path: none (aiohttp's reader alone).

Read against aiohttp 3.12.0 and 3.14.5 (the lowest supported and the installed version).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_websocket import WebSocketWriter

from wsmq._compat import FastPath, allowed, register

__all__ = [
    "MASKED_FRAMES",
    "RAW_FRAMES",
    "ErrorSink",
    "PayloadParser",
    "after_write",
    "is_closing",
    "raw_writer",
    "wrap_payload_parser",
    "write_ping",
]

_VERIFIED = ("3.12.", "3.13.", "3.14.")
_WRITER_ATTRS = ("transport", "protocol", "_limit", "_output_size")


def _writer_probe() -> bool:
    from aiohttp.http_websocket import WebSocketWriter

    init = WebSocketWriter.__init__.__code__.co_names
    return all(a in init for a in ("_limit", "_output_size", "_closing"))


def _reader_probe() -> bool:
    from aiohttp import web_protocol

    return "_payload_parser" in web_protocol.RequestHandler.__slots__


RAW_FRAMES = register(
    FastPath(
        name="raw_frames",
        library="aiohttp",
        verified=_VERIFIED,
        touches="WebSocketWriter._limit/_output_size/_closing, protocol._paused/_drain_helper",
        fallback="one WebSocketResponse.send_str per frame; ws.ping()",
        probe=_writer_probe,
    )
)
MASKED_FRAMES = register(
    FastPath(
        name="masked_frames",
        library="aiohttp",
        verified=_VERIFIED,
        touches="RequestHandler._payload_parser, WebSocketResponse._reader",
        fallback="none: aiohttp's reader accepts unmasked client frames",
        probe=_reader_probe,
        speed=False,
    )
)
_raw_ok = RAW_FRAMES.version_ok() and RAW_FRAMES.probe()
_masked_ok = MASKED_FRAMES.version_ok() and MASKED_FRAMES.probe()


def raw_writer(ws: web.WebSocketResponse) -> WebSocketWriter | None:
    """``ws``'s writer when frames can be written raw (no compression, switch on), else None."""
    if not (_raw_ok and allowed()):
        return None
    writer: WebSocketWriter | None = getattr(ws, "_writer", None)
    if writer is None or getattr(writer, "compress", True) or getattr(writer, "use_mask", True):
        return None
    if not all(hasattr(writer, a) for a in _WRITER_ATTRS):
        return None
    return writer


def is_closing(writer: WebSocketWriter) -> bool:
    """aiohttp's writer or its transport is closing: nothing more may be written."""
    return bool(getattr(writer, "_closing", False)) or writer.transport.is_closing()


def after_write(writer: WebSocketWriter, size: int) -> Awaitable[None] | None:
    """Account ``size`` bytes just written as aiohttp does; a wait when the transport is paused
    past ``limit`` bytes since the last check (await it), else ``None``."""
    total = writer._output_size + size
    if total <= writer._limit:
        writer._output_size = total
        return None
    writer._output_size = 0
    protocol = writer.protocol
    if getattr(protocol, "_paused", False):
        return protocol._drain_helper()
    return None


def write_ping(ws: web.WebSocketResponse, frame: bytes) -> bool:
    """Write ``frame`` (a ping) now, without flow control; ``False`` when the transport is not
    reachable or fast paths are off (the caller uses ``ws.ping()``). A closing socket gets
    nothing (``True``)."""
    if not (_raw_ok and allowed()):
        return False
    writer: WebSocketWriter | None = getattr(ws, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None:
        return False
    if not getattr(writer, "_closing", False) and not transport.is_closing():
        transport.write(frame)
    return True


class PayloadParser(Protocol):
    """What aiohttp's ``RequestHandler`` calls on its WebSocket reader."""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...
    def feed_eof(self) -> None: ...


class ErrorSink(Protocol):
    """Where aiohttp's reader reports a protocol error (the response's message queue)."""

    def set_exception(self, exc: BaseException) -> None: ...


def wrap_payload_parser(
    request: web.Request,
    ws: web.WebSocketResponse,
    wrap: Callable[[PayloadParser, ErrorSink], PayloadParser],
    wrapper_type: type,
) -> bool:
    """Replace the connection's frame reader with ``wrap(reader, error_queue)`` (right after
    ``await ws.prepare(request)``). ``False`` when it could not be, or is already, wrapped."""
    if not _masked_ok:
        return False
    handler: Any = request.protocol
    reader = getattr(handler, "_payload_parser", None)
    queue = getattr(ws, "_reader", None)
    if reader is None or isinstance(reader, wrapper_type) or queue is None:
        return False
    if not callable(getattr(queue, "set_exception", None)):
        return False
    handler._payload_parser = wrap(reader, queue)
    return True

"""Free what aiohttp keeps of HTTP on a connection that became a WebSocket.

Once a socket is upgraded, aiohttp's ``RequestHandler`` still holds its HTTP request parser
(the C parser object and its buffers) and its queue of pipelined requests (an empty
``deque``) for the life of the connection, though neither is used again: frames go to the
WebSocket reader, and the handler is not kept alive for another request (the saving per idle
socket is in ``docs/performance.md``).

:func:`release_http_state` drops both. They are private attributes, so it acts only on the
aiohttp versions whose code was read for this (:data:`VERIFIED`: after an accepted upgrade,
``RequestHandler`` reads ``_parser`` only behind a ``None`` check, as ``connection_lost``
sets it to ``None`` too, and reads the queue again only to serve another request on the same
connection, which an upgraded one never does), and only on a handler in the expected state.
Elsewhere it changes nothing and returns ``False``; ``tests/gateway/test_http_release.py``
fails when the installed aiohttp is not covered, so an upgrade is checked rather than
silently costing memory.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from typing import Any, Final

import aiohttp
from aiohttp import web

from wsmq._compat import FastPath, allowed, register
from wsmq._compat.aiohttp_notes import note_unverified_aiohttp

__all__ = ["HTTP_RELEASE", "VERIFIED", "release_http_state", "supported"]

log = logging.getLogger("wsmq.gateway")

#: aiohttp minor versions whose ``web_protocol.RequestHandler`` was checked for this.
VERIFIED: Final = ("3.14.",)


def _probe() -> bool:
    from aiohttp import web_protocol

    handler = web_protocol.RequestHandler
    return all(hasattr(handler, name) for name in ("_parser", "_messages", "_payload_parser"))


HTTP_RELEASE: Final = register(
    FastPath(
        name="http_release",
        library="aiohttp",
        verified=VERIFIED,
        touches="RequestHandler._parser, _messages, _payload_parser",
        fallback="keep aiohttp's HTTP state for the life of the socket (~2.5 KiB more)",
        probe=_probe,
    )
)


class _NoRequests:
    """Stands in for the queue of pipelined requests: always empty, shared by every socket.

    Appending raises instead of storing: should aiohttp ever queue a request here, that
    connection fails rather than anything being shared between connections.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def append(self, item: object) -> None:
        raise RuntimeError("an upgraded connection received another HTTP request")

    def popleft(self) -> object:
        raise IndexError("no pipelined requests on an upgraded connection")


_NO_REQUESTS: Final = _NoRequests()


def supported() -> bool:
    """Whether the installed aiohttp is one :func:`release_http_state` acts on."""
    return aiohttp.__version__.startswith(VERIFIED)


def release_http_state(request: web.Request) -> bool:
    """Drop the HTTP parser and request queue of an upgraded connection (call after
    ``await ws.prepare(request)``). ``True`` when released, ``False`` when left alone (also
    when fast paths are off)."""
    if not allowed():
        return False
    if not supported():
        _note_unsupported()
        return False
    handler: Any = request.protocol
    upgraded = getattr(handler, "_payload_parser", None) is not None  # the WebSocket reader
    queue = getattr(handler, "_messages", None)
    if not upgraded or getattr(handler, "_parser", None) is None:
        return False
    if not isinstance(queue, deque) or queue:
        return False
    handler._parser = None
    handler._messages = _NO_REQUESTS
    return True


@functools.cache
def _note_unsupported() -> None:
    note_unverified_aiohttp(
        log,
        VERIFIED,
        "releasing HTTP state after the upgrade",
        "each socket keeps ~2.5 KiB more",
        "http_release_unsupported",
    )

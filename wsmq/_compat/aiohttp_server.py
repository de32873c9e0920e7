"""aiohttp's HTTP server, hooked before the WebSocket upgrade (a guard, not a speed path).

The pre-upgrade guard (:mod:`wsmq.gateway.preupgrade`) needs to hear when a connection is
made, lost and has sent its first request's headers, and to keep the excerpt of an oversized
header out of aiohttp's 400 reply and error log. aiohttp offers no public hook for either:
here ``web.Server``'s ``connection_made``/``connection_lost``/``request_factory`` callbacks
(which every ``RequestHandler`` calls) are wrapped, and the handler's queue of parsed requests
(``RequestHandler._messages``) is replaced by one that rewrites ``web_protocol._ErrInfo``.
Read against aiohttp 3.12.0 and 3.14.5 (3.13 was not read); elsewhere :func:`hook_server` is
not used and the node runs without the guard (aiohttp's keep-alive timeout still closes an
idle connection).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, TypeAlias

import aiohttp
from aiohttp import web, web_protocol
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from wsmq._compat import FastPath, register

__all__ = ["PREUPGRADE_HOOKS", "VERIFIED", "Handler", "ServerHooks", "hook_server", "supported"]

#: aiohttp minor versions whose ``web_server.Server`` and ``web_protocol.RequestHandler`` were
#: read for these hooks.
VERIFIED: Final = ("3.12.", "3.14.")


def _probe() -> bool:
    server = web.Server.__dict__
    return (
        all(callable(server.get(name)) for name in ("connection_made", "connection_lost"))
        and "__slots__" not in server  # instance attributes replace the callbacks
        and "_messages" in web_protocol.RequestHandler.__slots__
        and hasattr(web_protocol, "_ErrInfo")
    )


PREUPGRADE_HOOKS: Final = register(
    FastPath(
        name="preupgrade_hooks",
        library="aiohttp",
        verified=VERIFIED,
        touches="web.Server connection_made/connection_lost/request_factory, "
        "RequestHandler._messages, web_protocol._ErrInfo",
        fallback="no header_timeout or max_http_connections (aiohttp's keep-alive timeout)",
        probe=_probe,
        speed=False,
    )
)


def supported() -> bool:
    """Whether the installed aiohttp is one whose server :func:`hook_server` can hook."""
    return aiohttp.__version__.startswith(VERIFIED) and _probe()


class _SanitizedRequests(deque[web_protocol._MsgType]):
    """A ``RequestHandler``'s queue of parsed requests that drops the excerpt aiohttp puts in
    its error for an oversized request line or header (the first 100 bytes of the value).

    aiohttp answers such a request with a 400 whose body is the error's message, and logs the
    error: both would carry a cookie or token. The replacement error says which limit was
    exceeded and carries no traceback.
    """

    __slots__ = ("_redacted",)

    def __init__(self, redacted: str) -> None:
        super().__init__()
        self._redacted = redacted

    def append(self, item: web_protocol._MsgType) -> None:
        message = item[0]
        if isinstance(message, web_protocol._ErrInfo) and isinstance(message.exc, LineTooLong):
            limit = message.exc.args[1] if len(message.exc.args) > 1 else "Unknown"
            item = (
                web_protocol._ErrInfo(
                    status=message.status,
                    exc=LineTooLong(self._redacted, limit),
                    message=f"Request line or header field longer than {limit} bytes",
                ),
                item[1],
            )
        super().append(item)


#: A connection as the hooks see it (its public ``close()``, ``force_close()``).
Handler: TypeAlias = web_protocol.RequestHandler


class ServerHooks:
    """What the guard is told, in the order aiohttp calls them for one connection."""

    def admit(self, handler: Handler, transport: asyncio.Transport) -> bool:
        """Before aiohttp sets the connection up; ``False``: refused (the hook closed it)."""
        return True

    def made(self, handler: Handler) -> None:
        pass

    def lost(self, handler: Handler) -> None:
        pass

    def headers_in(self, handler: Handler) -> None:
        pass


def hook_server(server: web.Server, hooks: ServerHooks, redacted: str) -> None:
    """Call ``hooks`` from ``server``'s per-connection callbacks (before it serves any), and
    replace oversized-header excerpts in its 400 replies and logs with ``redacted``."""
    made, lost = server.connection_made, server.connection_lost
    make_request = server.request_factory

    def connection_made(handler: Handler, transport: asyncio.Transport) -> None:
        if not hooks.admit(handler, transport):
            return
        made(handler, transport)
        handler._messages = _SanitizedRequests(redacted)
        hooks.made(handler)

    def connection_lost(handler: Handler, exc: BaseException | None = None) -> None:
        hooks.lost(handler)
        lost(handler, exc)

    def request_factory(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: Handler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        hooks.headers_in(protocol)
        return make_request(message, payload, protocol, writer, task)

    server.connection_made = connection_made  # type: ignore[method-assign]
    server.connection_lost = connection_lost  # type: ignore[method-assign]
    server.request_factory = request_factory

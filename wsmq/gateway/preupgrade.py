"""Guard a node's HTTP server before the WebSocket upgrade.

``auth_deadline``, ``max_connections`` and the heartbeat only start once a socket is a
WebSocket. Before that, a TCP connection that sends nothing, half a request, or one header
line every few seconds would hold a descriptor for as long as aiohttp's keep-alive timeout,
and enough of them exhaust the node's descriptors (``/healthz`` then fails for everyone).
:func:`setup_runner` adds, to a node running its own server:

- a **header deadline** (``header_timeout``): a connection whose request line and headers are
  not complete in time is closed;
- a **cap** (``max_http_connections``, at most a quarter of the open-file limit) on the
  connections that are not (yet) WebSockets: handshakes in progress and plain HTTP requests,
  keep-alive ones included; more are answered 503 and closed at once;
- **no echo of an oversized header**: aiohttp's 400 for a request line or header longer than
  ``max_header_size`` repeats, in its body and in its error log, the first 100 bytes of the
  value (a cookie, a token); here both say only which limit was exceeded;
- the process's soft open-file limit raised to its hard limit (:func:`raise_fd_limit`);
- ``accept()`` failing for want of descriptors (EMFILE) logged as one warning per interval
  without a traceback (:class:`AcceptErrorThrottle`), instead of a traceback per attempt.

The first three hook aiohttp's ``web.Server`` through :mod:`wsmq._compat.aiohttp_server`
(guard ``preupgrade_hooks``): aiohttp has no public hook for them, so they are only installed
on the versions read for this (:data:`VERIFIED`) and after :func:`supported` probed their
shape; elsewhere the node runs without them (aiohttp's keep-alive timeout still closes a
connection that never completes a request) and says so once.
``tests/gateway/test_preupgrade.py`` fails when the installed aiohttp is not covered.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from wsmq._compat.aiohttp_notes import note_unverified_aiohttp
from wsmq._compat.aiohttp_server import VERIFIED, Handler, ServerHooks, hook_server, supported
from wsmq.gateway.deadlines import DeadlineTimer, Entry
from wsmq.logs import REDACTED
from wsmq.settings import Settings

__all__ = [
    "VERIFIED",
    "AcceptErrorThrottle",
    "PreUpgradeGuard",
    "ThrottledLog",
    "raise_fd_limit",
    "setup_runner",
    "supported",
]

log = logging.getLogger("wsmq.gateway")

#: What a connection over the cap gets before it is closed.
_REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 35\r\n\r\ntoo many connections; retry later\r\n"
)
#: accept() errors that mean "out of descriptors or memory" (asyncio retries after 1 s).
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class ThrottledLog:
    """Log one event at most once per ``interval`` seconds, with how many were left out."""

    __slots__ = ("_last", "_level", "_message", "_skipped", "event", "interval", "total")

    def __init__(self, message: str, event: str, interval: float, level: int = logging.WARNING):
        self._message = message
        self._level = level
        self.event = event
        self.interval = interval
        self._last = float("-inf")
        self._skipped = 0
        self.total = 0

    def note(self, **extra: object) -> None:
        self.total += 1
        now = time.monotonic()
        if now - self._last < self.interval:
            self._skipped += 1
            return
        self._last = now
        skipped, self._skipped = self._skipped, 0
        log.log(
            self._level,
            self._message,
            extra={"event": self.event, "suppressed": skipped, **extra},
        )


class AcceptErrorThrottle:
    """A loop exception handler: resource errors of ``accept()`` become one warning per
    interval, without a traceback; every other context goes to the previous handler.

    asyncio reports each failed ``accept()`` (up to the listen backlog per readiness, every
    second while descriptors are exhausted) to the loop's exception handler, whose default
    logs a traceback each time.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.log = ThrottledLog(
            "accept() failed: out of file descriptors or memory; new connections wait",
            "accept_resource_error",
            interval,
        )
        self._previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
        self._previous = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self)

    def uninstall(self) -> None:
        loop = self._loop
        if loop is not None and loop.get_exception_handler() is self:
            loop.set_exception_handler(self._previous)
        self._loop = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            self.log.note(error=errno.errorcode.get(exc.errno or 0, str(exc.errno)))
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


def raise_fd_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit to the hard one; the ``(old, new)`` soft limits, or
    ``None`` where there are no such limits (Windows)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one for descriptors (Linux caps it at
    # fs.nr_open, 1048576 by default).
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == target or soft == resource.RLIM_INFINITY:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning(
            "could not raise the open-file limit from %d to %d: %s", soft, target, exc,
            extra={"event": "fd_limit_unchanged"},
        )  # fmt: skip
        return soft, soft
    log.info(
        "open-file limit raised from %d to %d", soft, target,
        extra={"event": "fd_limit_raised", "old": soft, "new": target},
    )  # fmt: skip
    return soft, target


def effective_http_cap(setting: int, fd_limit: int | None) -> int:
    """``max_http_connections`` bounded by a quarter of the open-file limit (0: unlimited)."""
    if setting <= 0 or fd_limit is None:
        return max(setting, 0)
    return min(setting, max(16, fd_limit // 4))


class PreUpgradeGuard(ServerHooks):
    """Header deadline and cap for the connections of one ``web.Server`` not yet upgraded.

    A connection counts from ``connection_made`` until its WebSocket response is prepared
    (the app's ``on_response_prepare`` signal) or it is lost; its deadline runs until aiohttp
    has parsed its first request's headers (``request_factory``). Deadlines share one loop
    timer (:class:`~wsmq.gateway.deadlines.DeadlineTimer`).
    """

    def __init__(self, header_timeout: float, max_connections: int) -> None:
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        #: Connections not yet upgraded -> their header deadline (``None`` once headers came).
        self._pending: dict[Handler, Entry | None] = {}
        self._timer: DeadlineTimer[Handler] = DeadlineTimer(self._expired, clock=time.monotonic)
        self.refused = ThrottledLog(
            "connections refused: too many not yet upgraded to WebSockets",
            "http_connections_full",
            10.0,
        )
        self.timed_out = ThrottledLog(
            "connections closed: request headers not complete within header_timeout",
            "header_timeout",
            10.0,
            logging.INFO,
        )

    def __len__(self) -> int:
        """Connections counted now (not yet upgraded, not lost)."""
        return len(self._pending)

    # --- wiring -----------------------------------------------------------------------------

    def attach(self, app: web.Application) -> None:
        """Hear about upgrades (call before the app is frozen)."""
        app.on_response_prepare.append(self._on_response_prepare)

    def install(self, server: web.Server) -> None:
        """Hook ``server``'s per-connection callbacks (before it serves a connection)."""
        hook_server(server, self, REDACTED)

    def admit(self, handler: Handler, transport: asyncio.Transport) -> bool:
        if self.max_connections and len(self._pending) >= self.max_connections:
            self._refuse(handler, transport)
            return False
        return True

    def made(self, handler: Handler) -> None:
        when = time.monotonic() + self.header_timeout
        self._pending[handler] = self._timer.schedule(when, handler)

    def lost(self, handler: Handler) -> None:
        self._forget(handler)

    def headers_in(self, handler: Handler) -> None:
        entry = self._pending.get(handler)
        if entry is not None:  # the first request's headers are in: no deadline any more
            self._timer.cancel(entry)
            self._pending[handler] = None

    def close(self) -> None:
        self._timer.close()

    # --- events -----------------------------------------------------------------------------

    async def _on_response_prepare(
        self, request: web.Request, response: web.StreamResponse
    ) -> None:
        if isinstance(response, web.WebSocketResponse):
            self._forget(request.protocol)

    def _forget(self, handler: Handler) -> None:
        entry = self._pending.pop(handler, None)
        if entry is not None:
            self._timer.cancel(entry)

    def _expired(self, handler: Handler) -> None:
        if handler not in self._pending:
            return
        self._pending[handler] = None
        self.timed_out.note(timeout=self.header_timeout)
        handler.force_close()  # what aiohttp's own keep-alive timeout does to an idle handler

    def _refuse(self, handler: Handler, transport: asyncio.Transport) -> None:
        self.refused.note(limit=self.max_connections)
        handler.close()  # what it sends is read and dropped, not parsed, let alone served
        transport.write(_REFUSED)
        # Closed on the next loop iteration, once aiohttp's request task has started: closed
        # now, the handler would lose its state before that task's first step and fail in it.
        asyncio.get_running_loop().call_later(0, handler.force_close)


async def setup_runner(runner: web.AppRunner, settings: Settings) -> PreUpgradeGuard | None:
    """``runner.setup()`` for a node that runs its own server, guarded as described above.

    Returns the installed guard (``None`` on an aiohttp version not covered). The guard and
    the accept-error handler are removed when the runner cleans up.
    """
    loop = asyncio.get_running_loop()
    limits = raise_fd_limit()
    throttle = AcceptErrorThrottle()
    throttle.install(loop)
    app = runner.app
    guard: PreUpgradeGuard | None = None
    if supported():
        cap = effective_http_cap(settings.max_http_connections, limits and limits[1])
        if cap != settings.max_http_connections:
            log.info(
                "max_http_connections lowered to %d, a quarter of the open-file limit", cap,
                extra={"event": "http_connections_cap", "limit": cap},
            )  # fmt: skip
        guard = PreUpgradeGuard(settings.header_timeout, cap)
        guard.attach(app)
    else:
        _note_unsupported()

    async def on_cleanup(_app: web.Application) -> None:
        throttle.uninstall()
        if guard is not None:
            guard.close()

    app.on_cleanup.append(on_cleanup)
    await runner.setup()
    if guard is not None:
        assert runner.server is not None
        guard.install(runner.server)
    return guard


@functools.cache
def _note_unsupported() -> None:
    note_unverified_aiohttp(
        log,
        VERIFIED,
        "the pre-upgrade guard",
        "no header_timeout or max_http_connections; aiohttp's keep-alive timeout applies",
        "preupgrade_unsupported",
    )

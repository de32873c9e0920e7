"""In-band token renewal: ``expiring`` answered with ``/refresh``, one at a time, spaced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import aiohttp

from wsmq.backoff import Backoff
from wsmq.client.errors import AuthenticationFailed, Unauthorized
from wsmq.client.events import Event, TransientError
from wsmq.client.reconnect import Reconnector

__all__ = ["MIN_REFRESH_INTERVAL", "Refresher"]

log = logging.getLogger(__name__)

#: Seconds between two ``/refresh`` of a client at the least. A server that warns again right
#: after every refresh (tokens shorter than its warning, before wsmq 0.x fixed it) would
#: otherwise be answered as fast as round trips allow.
MIN_REFRESH_INTERVAL = 1.0


class Refresher:
    """Answers ``expiring`` on ``ws``: ``tokens()`` then ``/refresh <x-token>``.

    Never more than one renewal in flight (an ``expiring`` meanwhile is covered by it), never
    two ``/refresh`` within :data:`MIN_REFRESH_INTERVAL`. A failing ``tokens()`` is reported
    (:class:`TransientError`) and retried with ``backoff`` while the socket is open;
    :class:`Unauthorized` from it ends the client (``fail``).
    """

    def __init__(
        self,
        reconnect: Reconnector,
        backoff: Backoff,
        emit: Callable[[Event], None],
        fail: Callable[[aiohttp.ClientWebSocketResponse, BaseException], None],
    ) -> None:
        self._reconnect = reconnect
        self._backoff = backoff
        self._emit = emit
        self._fail = fail
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None  # the socket of _task
        self._last = float("-inf")  # loop time of the last /refresh sent

    def expiring(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The server warned on ``ws``: renew, unless a renewal for ``ws`` is on its way."""
        if self._task is not None and not self._task.done():
            if self._ws is ws:
                return
            self._task.cancel()  # one for a socket that is gone
        self._ws = ws
        self._task = asyncio.create_task(self._renew(ws), name="wsmq-client-refresh")

    async def cancel(self) -> None:
        """Stop a renewal in flight (the client closes)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last + MIN_REFRESH_INTERVAL - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        while not ws.closed:
            try:
                x_token, _access_token = await self._reconnect.renew_tokens()
            except Unauthorized as exc:
                error = AuthenticationFailed(f"tokens() refused: {exc}")
                error.__cause__ = exc
                self._fail(ws, error)
                return
            except Exception as exc:  # the token endpoint's blip: not the end of the client
                try:
                    self._emit(TransientError(self._reconnect.node, exc))
                except Exception as raised:  # on_event raised: that ends the client
                    self._fail(ws, raised)
                    return
                await self._backoff.sleep()
                continue
            self._backoff.reset()
            if ws.closed:
                return
            self._last = loop.time()
            try:
                await ws.send_str(f"/refresh {x_token}")
            except (ConnectionError, aiohttp.ClientError) as exc:
                log.debug("wsmq client: /refresh not sent: %s", exc)  # the read loop sees it
            return

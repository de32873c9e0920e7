"""Which node next, when, and with which tokens: the client's reconnect loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from wsmq.backoff import Backoff
from wsmq.client.errors import AuthenticationFailed, ClientError, ConnectionClosed, Unauthorized
from wsmq.client.events import (
    Connected,
    Connecting,
    Disconnected,
    Event,
    Next,
    TransientError,
    after_close,
)
from wsmq.protocol.wire import SUBPROTOCOL

__all__ = ["Reconnector", "Serve", "TokenSource"]

#: Returns ``(x-token, x-access-token)``; called at the first connect, after 4401/4403 or a
#: refused handshake, and on ``expiring``. Raising :class:`Unauthorized` ends the client;
#: any other exception is retried with backoff.
TokenSource = Callable[[], Awaitable[tuple[str, str]]]
#: Runs one open socket until it closes: (close code, reason, whether it received good frames).
Serve = Callable[[aiohttp.ClientWebSocketResponse], Awaitable[tuple[int | None, str, bool]]]


class Reconnector:
    """Connects to ``nodes`` round robin by the close-code policy of :func:`after_close`."""

    def __init__(
        self,
        nodes: list[str],
        tokens: TokenSource,
        *,
        legacy: bool,
        heartbeat: float | None,
        on_event: Callable[[Event], None] | None,
        backoff: Backoff,
    ) -> None:
        self._nodes = nodes
        self._source = tokens
        self._legacy = legacy
        self._heartbeat = heartbeat
        self._on_event = on_event
        self._backoff = backoff
        self._tokens: tuple[str, str] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.node = ""  # the node of the current (or last) connection
        self._failure: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """End the loop with ``error`` once the current connection closes (close it next)."""
        self._failure = error

    async def renew_tokens(self) -> tuple[str, str]:
        """Call the token source now (on ``expiring``); later connects use the result."""
        self._tokens = await self._source()
        return self._tokens

    async def run(self, serve: Serve) -> None:
        """Connect, ``serve`` the socket until it closes, and again, until a fatal close."""
        assert self.session is not None
        auth_strikes = 0
        attempt = 0
        while True:
            node = self._nodes[attempt % len(self._nodes)]
            attempt += 1
            self._emit(Connecting(node))
            fresh = self._tokens is None
            if self._tokens is None:
                self._tokens = await self._fetch_tokens(node)
            x_token, access_token = self._tokens
            try:
                ws = await self.session.ws_connect(
                    node,
                    headers={"x-token": x_token, "x-access-token": access_token},
                    protocols=() if self._legacy else (SUBPROTOCOL,),
                    heartbeat=self._heartbeat,
                )
            except aiohttp.WSServerHandshakeError as exc:
                self._emit(Disconnected(node, None, f"HTTP {exc.status}"))
                if exc.status in (401, 403):
                    self._tokens = None
                    if fresh:
                        raise AuthenticationFailed(f"{node}: HTTP {exc.status}") from None
                    attempt -= 1  # the same node again, with fresh tokens
                    continue
                await self._backoff.sleep()
                continue
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self._emit(Disconnected(node, None, str(exc) or type(exc).__name__))
                await self._backoff.sleep()
                continue
            if not self._legacy and ws.protocol != SUBPROTOCOL:
                await ws.close()
                raise ClientError(f"{node} did not accept the {SUBPROTOCOL} subprotocol")
            self.node = node
            self._emit(Connected(node))
            code, reason, healthy = await serve(ws)
            self._emit(Disconnected(node, code, reason))
            if self._failure is not None:
                raise self._failure
            if healthy:
                self._backoff.reset()
                auth_strikes = 0
            match after_close(code):
                case Next.NEXT_NODE_NOW:
                    continue
                case Next.NEW_TOKENS:
                    auth_strikes += 1
                    if auth_strikes > 1:
                        raise AuthenticationFailed(f"{node}: closed {code} {reason}")
                    self._tokens = None
                case Next.RAISE:
                    raise ConnectionClosed(f"{node}: closed {code} {reason}", code, reason)
                case Next.BACK_OFF:
                    await self._backoff.sleep()

    async def _fetch_tokens(self, node: str) -> tuple[str, str]:
        """``tokens()``, retried with backoff until it returns; :class:`Unauthorized` ends it."""
        while True:
            try:
                return await self._source()
            except Unauthorized as exc:
                raise AuthenticationFailed(f"tokens() refused: {exc}") from exc
            except Exception as exc:  # e.g. the token endpoint unreachable for a moment
                self._emit(TransientError(node, exc))
                await self._backoff.sleep()

    def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            self._on_event(event)

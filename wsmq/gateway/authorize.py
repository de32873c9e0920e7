"""Run a user's ``authorize`` hook, sync or async, for the pure session.

:class:`~wsmq.protocol.session.Session` asks ``authorize(user, qname, action)`` synchronously.
A host app's hook may need I/O (a database, an HTTP call): :class:`HookDecisions` calls it, and
awaits it when it returns an awaitable, *before* a frame reaches the session; the session's
``authorize`` is then :meth:`HookDecisions.lookup`, which only reads the decision taken.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from wsmq.protocol import wire as p
from wsmq.protocol.session import Session, State

__all__ = ["AUTHORIZE_TIMEOUT", "AuthorizeHook", "HookDecisions"]

log = logging.getLogger("wsmq.gateway")

#: ``authorize(user, qname, action) -> bool``, sync or async (``action``: ``"subscribe"`` or
#: ``"send"``). Raising, or an async hook slower than :data:`AUTHORIZE_TIMEOUT`, denies.
AuthorizeHook = Callable[[Any, str, str], bool | Awaitable[bool]]

#: Seconds an async ``authorize`` hook may take; a slower (or failing) hook denies.
AUTHORIZE_TIMEOUT = 5.0


class HookDecisions:
    """The decisions one connection's session needs from the hook, taken ahead of time."""

    def __init__(self, hook: AuthorizeHook) -> None:
        self.hook = hook
        self._decided: dict[tuple[str, str], bool] = {}
        self._held: list[tuple[str, str]] = []  # frames the session holds while /auth runs

    def lookup(self, user: Any, qname: str, action: str) -> bool:
        """The session's ``authorize``: the decision taken for this frame (else deny)."""
        return self._decided.get((qname, action), False)

    def clear(self) -> None:
        """Forget the decisions (after the session used them: each is for one frame)."""
        self._decided.clear()

    async def before(self, session: Session, command: p.Command | p.ProtocolError) -> None:
        """Decide what ``command`` needs, before ``session.handle(command)``."""
        match command:
            case p.Subscribe(qname):
                verb = "subscribe"
                if qname in session.subscriptions:
                    return  # the session answers without asking
            case p.Send(qname):
                verb = "send"
            case _:
                return
        if session.state is State.OPEN:
            await self.decide(session.user, qname, verb)
        elif session.state is State.AUTHENTICATING and len(self._held) < (
            session.limits.max_pending
        ):
            self._held.append((qname, verb))  # decided once /auth says who the user is

    async def before_authenticated(self, user: Any) -> None:
        """Decide the frames held during ``/auth``, before ``session.authenticated(user)``."""
        held, self._held = self._held, []
        for qname, verb in held:
            await self.decide(user, qname, verb)

    async def decide(self, user: Any, qname: str, verb: str) -> None:
        """Call the hook (awaiting it if needed) and remember its answer."""
        allowed = False
        try:
            result: Any = self.hook(user, qname, verb)
            if inspect.isawaitable(result):
                async with asyncio.timeout(AUTHORIZE_TIMEOUT):
                    result = await result
            allowed = bool(result)
        except Exception:  # a broken or slow hook denies; it never opens queues up
            log.exception(
                "authorize hook failed",
                extra={"event": "authorize_fail", "queue": qname, "action": verb},
            )
        self._decided[(qname, verb)] = allowed

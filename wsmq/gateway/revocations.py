"""Close this node's sockets whose access was revoked.

Two sources: revocation events (:class:`~wsmq.auth.RevocationBus`, published by logout, disable
and password change on any node) close every socket of the user at once; and, because pub/sub
loses what is published while our subscription is down, a :class:`StoreRecheck` after each
reconnect compares every local connection with the store. A connection authenticated with
tokens ends there when its user is gone or disabled, or when the store no longer holds the
access token it presented (logout, password change, a newer login); a connection of a host
app's ``authenticate`` hook (no access token) ends only when the store has its user disabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from wsmq.auth.authenticator import access_revision
from wsmq.backoff import Backoff
from wsmq.gateway.state import GatewayState

__all__ = ["StoreRecheck", "run_revocations"]

log = logging.getLogger("wsmq.gateway")


async def run_revocations(state: GatewayState) -> None:
    """Close local sockets of users revoked on any node; runs until cancelled."""
    from wsmq.auth import RevocationBus

    bus = RevocationBus(state.settings.redis_url, ns=state.settings.ns)
    recheck = StoreRecheck(state)
    try:
        # The re-check runs beside the event stream, never in front of it: a slow or failing
        # store must not hold back the events that arrive meanwhile.
        async for user_id in bus.revocations(on_reconnect=recheck.start):
            closed = await state.revoke_user(user_id)
            if closed:
                log.info(
                    "revoked user's sockets closed",
                    extra={"event": "revoke", "user": user_id, "sockets": closed},
                )
    finally:
        await recheck.stop()
        await bus.aclose()


class StoreRecheck:
    """Compare every connection of the node with the user store; users whose lookup failed
    are retried with backoff (up to ``max_backoff`` seconds apart) until the store answers.

    ``concurrency`` bounds the store reads in flight; ``read_timeout`` bounds each one.
    A new :meth:`start` replaces a re-check still running (it covers every connection again).
    """

    def __init__(
        self,
        state: GatewayState,
        *,
        concurrency: int = 16,
        read_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.state = state
        self.concurrency = concurrency
        self.read_timeout = read_timeout
        self.max_backoff = max_backoff
        self._task: asyncio.Task[int] | None = None

    def start(self) -> None:
        """Begin a re-check in the background (the ``on_reconnect`` callback)."""
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self.run(), name="wsmq-recheck")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> int:
        """Re-check every user with local sockets; returns how many sockets were closed."""
        backoff = Backoff(base=0.1, cap=self.max_backoff)
        pending = list(self.state.by_user)
        closed = 0
        while True:
            failed, closed_now = await self._check_all(pending)
            closed += closed_now
            # A user whose sockets all left meanwhile needs no answer any more.
            pending = [u for u in failed if u in self.state.by_user]
            if not pending:
                break
            delay = backoff.next()
            log.warning(
                "revocation re-check: the user store failed for %d user(s); retrying in %.1f s",
                len(pending),
                delay,
                extra={"event": "revoke_recheck_retry", "users": len(pending)},
            )
            await asyncio.sleep(delay)
        if closed:
            log.info(
                "revocation re-check closed sockets",
                extra={"event": "revoke_recheck", "sockets": closed},
            )
        return closed

    async def _check_all(self, users: list[str]) -> tuple[list[str], int]:
        failed: list[str] = []
        closed = 0
        todo: Iterator[str] = iter(users)

        async def worker() -> None:
            nonlocal closed
            for user_id in todo:  # shared: each worker takes the next user
                try:
                    closed += await self._check_user(user_id)
                except Exception as exc:  # any store failure (or timeout) is retried
                    log.debug(
                        "re-check of a user failed: %s",
                        type(exc).__name__,
                        extra={"event": "revoke_recheck_fail", "user": user_id},
                    )
                    failed.append(user_id)

        await asyncio.gather(*(worker() for _ in range(max(1, self.concurrency))))
        return failed, closed

    async def _check_user(self, user_id: str) -> int:
        auth = self.state.auth
        # Taken before the read: a socket admitted after it read the store itself, later.
        conns = list(self.state.by_user.get(user_id, ()))
        if auth is None or not conns:
            return 0
        async with asyncio.timeout(self.read_timeout):
            user = await auth.store.get(user_id)
        stale = [c for c in conns if auth.revoked_reason(user, access_revision(c.session.user))]
        await asyncio.gather(*(c.revoke() for c in stale), return_exceptions=True)
        return len(stale)

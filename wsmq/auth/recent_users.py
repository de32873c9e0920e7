"""A short-lived cache of user-store reads, shared by concurrent callers.

``/refresh`` checks the user in the store; a service account with a thousand sockets refreshing
at once then costs one read, not a thousand, and a store change is seen within ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from wsmq.auth.users import User

__all__ = ["RecentUsers"]


class RecentUsers:
    """``get(user_id)`` answers from a read made less than ``ttl`` seconds ago, or makes one
    (at most one at a time per user; the callers waiting meanwhile share its result or error).

    Errors are not cached. At most ``max_entries`` users are kept (the oldest go first), so the
    memory is bounded whatever ids the callers ask for.
    """

    def __init__(
        self,
        load: Callable[[str], Awaitable[User | None]],
        *,
        ttl: float = 1.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, User | None]] = {}
        self._loading: dict[str, asyncio.Future[User | None]] = {}

    async def get(self, user_id: str) -> User | None:
        entry = self._entries.get(user_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        loading = self._loading.get(user_id)
        if loading is None:
            loading = asyncio.ensure_future(self._read(user_id))
            self._loading[user_id] = loading
            loading.add_done_callback(lambda f: self._finished(user_id, f))
        # Shielded: a caller that gives up (its socket closed) must not cancel the others' read.
        return await asyncio.shield(loading)

    async def _read(self, user_id: str) -> User | None:
        started = self._clock()
        user = await self._load(user_id)
        self._store(user_id, started + self.ttl, user)
        return user

    def _store(self, user_id: str, until: float, user: User | None) -> None:
        self._entries.pop(user_id, None)
        if len(self._entries) >= self.max_entries:
            now = self._clock()
            for key in [k for k, (t, _) in self._entries.items() if t <= now]:
                del self._entries[key]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries[user_id] = (until, user)

    def _finished(self, user_id: str, future: asyncio.Future[User | None]) -> None:
        if self._loading.get(user_id) is future:
            del self._loading[user_id]
        if not future.cancelled():
            future.exception()  # retrieved: every waiter may have left before it failed

    def forget(self, user_id: str) -> None:
        """Drop the cached read of ``user_id`` (the next ``get`` reads the store)."""
        self._entries.pop(user_id, None)

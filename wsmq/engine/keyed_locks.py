"""One asyncio lock per key, alive only while someone holds or waits for it.

The delivery engine keeps a queue's realtime subscription in step with its consumers: a
subscribe and an unsubscribe of the *same* queue must not overtake each other, but different
queues need not wait for each other. One engine-wide lock made a reconnect storm of 10k
sockets subscribe one queue (one Redis round trip) at a time; :class:`KeyedLocks` serializes
per queue only and forgets a key's lock once its last user leaves, so idle queues cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["KeyedLocks"]


class KeyedLocks:
    """``async with locks.hold(key):`` excludes other holders of the same key only."""

    __slots__ = ("_locks",)

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> (lock, holders + waiters)

    def __len__(self) -> int:
        """Keys with a holder or a waiter right now."""
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

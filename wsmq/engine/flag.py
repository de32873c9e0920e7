"""A small :class:`asyncio.Event` for one waiter at a time (:class:`Flag`).

A node keeps a few events per socket and per consumed queue; an ``asyncio.Event`` allocates a
``deque`` of waiters up front (~600 bytes empty), which at 10k sockets is several MB for
nothing. A :class:`Flag` holds at most one future, created only while someone waits.
"""

from __future__ import annotations

import asyncio

__all__ = ["Flag"]


class Flag:
    """``set``/``clear``/``is_set``/``wait`` like ``asyncio.Event``, for a single waiter.

    Only one task may wait at a time (the consumer task, a socket's read loop): cancelling a
    :meth:`wait` (e.g. by ``asyncio.timeout``) cancels its future, which a second waiter would
    share.
    """

    __slots__ = ("_fut", "_value")

    def __init__(self) -> None:
        self._value = False
        self._fut: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        self._value = True
        fut = self._fut
        if fut is not None:
            self._fut = None
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> None:
        await self.waiter()

    def waiter(self) -> asyncio.Future[None]:
        """A future done once the flag is set (at once if it is); ``await flag.waiter()``
        waits like :meth:`wait` without keeping a coroutine frame alive meanwhile."""
        fut = self._fut
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            if self._value:
                fut.set_result(None)
            else:
                self._fut = fut
        return fut

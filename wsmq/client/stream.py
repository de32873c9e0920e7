"""``client.events()``: the client's events as a bounded async iterator that never blocks it."""

from __future__ import annotations

import asyncio
from collections import deque

from wsmq.client.events import Event

__all__ = ["DEFAULT_EVENTS_BUFFER", "EventStream"]

DEFAULT_EVENTS_BUFFER = 1000


class EventStream:
    """Events as they happen; ``async for`` them. Ends when the client closes or fails.

    The client never waits for a reader: when ``maxsize`` events are unread, the oldest is
    dropped for the new one and :attr:`dropped` counts it.
    """

    def __init__(self, maxsize: int = DEFAULT_EVENTS_BUFFER) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an integer >= 1, not {maxsize!r}")
        self._items: deque[Event] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._ended = False
        self.dropped = 0  # events lost to a slow reader

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def feed(self, event: Event) -> None:
        """Used by the client: one more event (the oldest unread one goes if the buffer is full)."""
        if self._ended:
            return
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(event)
        self._ready.set()

    def finish(self) -> None:
        """End the iteration once the buffered events are read."""
        self._ended = True
        self._ready.set()

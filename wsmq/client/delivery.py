"""A delivered message and the subscription stream that yields them."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsmq.client.client import Client

__all__ = ["Delivery", "Subscription"]


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One message of ``queue``. Settle it with :meth:`ack`, :meth:`nack` or :meth:`extend`.

    In legacy mode the server deleted the message when it delivered it: ``id`` is ``""``,
    ``rc`` 0, ``sent`` 0.0, and :meth:`ack` does nothing.
    """

    queue: str
    id: str
    rc: int
    sent: float
    message: str = field(repr=False)
    client: Client = field(repr=False, compare=False)
    generation: int = field(repr=False)  # which connection of the client delivered it

    async def ack(self, *, confirm: bool = False) -> bool:
        """Delete the message. Acks made in one event-loop turn go out as one ``/ack`` frame.

        Without ``confirm`` this returns ``True`` once the ack is queued; with it, it waits for
        the server's ``acked`` (``True``) or an error / a lost connection (``False``: the
        message will be delivered again).
        """
        return await self.client.ack(self, confirm=confirm)

    async def nack(self, delay: float | None = None, *, confirm: bool = False) -> bool:
        """Give the message back: visible again at once, or after ``delay`` whole seconds.

        Nacks of one loop turn with the same delay share one ``/nack`` frame. ``confirm``: wait
        for ``nacked`` (``True``) or an error / a lost connection (``False``).
        """
        return await self.client.nack(self, delay, confirm=confirm)

    async def extend(self, seconds: float, *, confirm: bool = False) -> bool:
        """Keep the message hidden (and held) ``seconds`` from now: a long handler.

        Extends of one loop turn with the same ``seconds`` share one ``/extend`` frame.
        ``confirm``: wait for ``extended`` (``True``) or an error / a lost connection
        (``False``: the old deadline stands).
        """
        return await self.client.extend(self, seconds, confirm=confirm)


class Subscription:
    """The deliveries of one queue, as an async iterator; it ends when the client closes and
    raises the client's fatal error (or the subscribe's ``CommandFailed``).

    ``await sub.ready()`` waits for the first ``subscribed`` (one-shot, like the JS client's
    ``sub.ready``); every later (re)subscribe is a :class:`~wsmq.client.Subscribed` event.
    """

    def __init__(self, queue: str, device: str | None = None) -> None:
        self.queue = queue
        #: The device this subscription is for (``None``: a plain subscription).
        self.device = device
        # A deque and its waiters rather than an asyncio.Queue: this is the per-message path.
        # Several tasks may iterate one subscription (a pool of workers): each delivery goes to
        # one of them.
        self._items: deque[Delivery] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()  # set at the first `subscribed`, or when it ends
        #: Whether a node answered ``subscribed`` at least once.
        self.subscribed = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: hand the wake-up on
                else:
                    self._waiters.remove(waiter)
                raise
        return self._items.popleft()

    async def ready(self) -> None:
        """Wait for the first ``subscribed``. Raises the subscription's error if it ended
        before (``CommandFailed``: refused; the client's fatal error); returns if it ended
        without one (unsubscribed, the client closed)."""
        await self._ready.wait()
        if not self.subscribed and self._error is not None:
            raise self._error

    def mark_subscribed(self) -> None:
        """Used by the client: a node answered ``subscribed``."""
        self.subscribed = True
        self._ready.set()

    def feed(self, delivery: Delivery) -> None:
        """Used by the client: the next delivery of this queue."""
        if not self._ended:
            self._items.append(delivery)
            self._wake()

    def finish(self, error: BaseException | None = None) -> None:
        """Used by the client: end the iteration (with ``error`` raised, if given), once the
        deliveries already fed are read."""
        if not self._ended:
            self._ended = True
            self._error = error
            self._ready.set()
            while self._waiters:
                self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

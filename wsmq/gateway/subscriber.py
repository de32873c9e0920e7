"""The delivery engine's view of one subscription of one socket (:class:`SocketSubscriber`),
and what it needs of the socket's connection (:class:`SubscriberOwner`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from wsmq.engine.consumer import Subscription
from wsmq.gateway.frames import FrameBatchWriter
from wsmq.gateway.state import GatewayState
from wsmq.protocol.server_frames import encode_message_utf8
from wsmq.protocol.session import Session
from wsmq.queue import Message

__all__ = ["SEND_ERRORS", "SocketSubscriber", "SubscriberOwner"]

# A write to a socket that is closing: the peer is gone, which is not an error of ours.
SEND_ERRORS = (ConnectionError, RuntimeError)


class SubscriberOwner(Protocol):
    """The connection as its subscriptions see it (:class:`~wsmq.gateway.connection.Connection`)."""

    state: GatewayState
    session: Session
    #: Writes batches of text frames with one socket write.
    frames: FrameBatchWriter
    #: ``"v1"`` or ``"legacy"``, the metrics label of the socket's protocol.
    mode_label: str

    @property
    def closing(self) -> bool:
        """The socket is closing: nothing more is written to it."""

    def write_buffer_size(self) -> int:
        """Bytes queued in the transport, not yet taken by the kernel."""


class SocketSubscriber:
    """The delivery engine's handle on one subscription of one socket.

    ``window()`` is how many more messages this subscription may take from Redis right now:
    the per-subscription window minus the unacked messages (``wsmq.v1``; the engine itself
    subtracts what it is still writing), and zero while the socket's write buffer is over its
    limit — so a client that stops reading costs Redis space, not server memory. When the
    buffer drains again the engine is woken (``Subscription.wake``).
    """

    __slots__ = (
        "_drain_watch",
        "_frames",
        "ack_mode",
        "active",
        "closed",
        "conn",
        "handle",
        "qname",
    )

    #: How often a backed-up socket is checked for having drained (seconds).
    DRAIN_CHECK = 0.05

    def __init__(self, conn: SubscriberOwner, qname: str) -> None:
        self.conn = conn
        self.qname = qname
        self.ack_mode = conn.session.v1
        self.handle: Subscription | None = None  # the engine's, once subscribed
        self.closed = False
        self.active = False  # set once the `subscribed` reply is written
        self._drain_watch: asyncio.Task[None] | None = None
        self._frames = conn.frames

    def window(self) -> int:
        """Messages this subscription can take now (0 when closed or the socket is backed up)."""
        if self.closed or not self.active or self.conn.closing:
            return 0
        settings = self.conn.state.settings
        if self.conn.write_buffer_size() >= settings.write_buffer_limit:
            self._watch_drain()
            return 0
        unacked = self.handle.unacked if self.handle is not None else 0
        # Messages being written are counted by the engine (Subscription.free), not here.
        return max(0, settings.window - unacked)

    def _watch_drain(self) -> None:
        if self._drain_watch is None or self._drain_watch.done():
            self._drain_watch = self.conn.state.spawn(self._wait_drained())

    async def _wait_drained(self) -> None:
        limit = self.conn.state.settings.write_buffer_limit
        while not (self.closed or self.conn.closing):
            if self.conn.write_buffer_size() < limit:
                if self.handle is not None:
                    self.handle.wake()
                return
            await asyncio.sleep(self.DRAIN_CHECK)

    async def deliver(self, msg: Message) -> bool:
        """Write ``msg`` to the socket; False when the socket is gone (the engine releases it).

        The engine uses :meth:`deliver_batch`; this is the ``Subscriber`` protocol's form.
        """
        return await self.deliver_batch((msg,)) == 1

    async def deliver_batch(self, msgs: Sequence[Message]) -> int:
        """Write ``msgs`` in order, one frame each, with one socket write when possible.

        Returns how many were written (a prefix of ``msgs``); fewer than all means the socket
        is gone and the engine releases the rest.
        """
        if self.closed or self.conn.closing:
            return 0
        mode, q = self.conn.session.mode, self.qname
        encode = encode_message_utf8
        payloads = [encode(mode, q, m.id, m.rc, m.sent, m.message) for m in msgs]
        try:
            written = await self._frames.send_texts(payloads)
        except SEND_ERRORS:  # lost while waiting for the buffer to drain: maybe never sent
            written = 0
        if written:
            self.conn.state.metrics.observe_deliveries(
                self.conn.mode_label,
                now_ms=time.time() * 1000.0,
                sent_ms=[float(m.sent) for m in msgs[:written]],
            )
        return written

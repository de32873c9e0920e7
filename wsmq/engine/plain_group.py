"""The plain subscribers of a fan-out queue: one consumer's side of the shared inbox
(docs/delivery.md, Devices, "Plain subscribers of a fan-out queue").

While a queue has devices, its plain subscribers form one more recipient of the fan-out, the
shared inbox ``q@~`` (:data:`~wsmq.protocol.names.GROUP`), which they compete on as they compete
on the queue otherwise. A node's plain consumer of ``q`` joins it when its receive answers "fans
out" (taking this node's lease of ``~``, like a device's), receives from it after each fan-out
run, and leaves it when the fan-out script removed it (no device left, the inbox drained):
back to the queue itself.

Messages received from the shared inbox are settled (deleted, released, their visibility
changed) there, the others in the queue: :class:`PlainGroup` remembers which ids came from the
shared inbox until they are settled, so a switch either way strands nothing in flight.
"""

from __future__ import annotations

from collections.abc import Iterable

from wsmq.engine.devices import DeviceLeases
from wsmq.protocol.names import GROUP, inbox_name

__all__ = ["PlainGroup"]


class PlainGroup:
    """Which source each in-flight message of one plain consumer came from."""

    # Every plain consumer has one, and most queues never have a device: an idle one keeps
    # four slots, no inbox name and no set (~290 bytes less per subscribed socket with its own
    # queue; docs/performance.md, round 8).
    __slots__ = ("_from_inbox", "draining", "joined", "qname")

    def __init__(self, qname: str) -> None:
        self.qname = qname
        #: This node holds a lease of the shared inbox: its consumer receives from it.
        self.joined = False
        #: Joined, and the queue has no device left: the consumer empties the shared inbox (and
        #: receives from the queue too); an ack may be the last message there.
        self.draining = False
        self._from_inbox: set[str] | None = None  # made by the first received()

    @property
    def inbox(self) -> str:
        """The shared inbox's name ``q@~``."""
        return inbox_name(self.qname, GROUP)

    async def join(self, leases: DeviceLeases) -> None:
        """Take this node's lease of the shared inbox (registering it if it is missing)."""
        await leases.acquire(self.qname, GROUP)
        self.joined = True

    async def leave(self, leases: DeviceLeases) -> None:
        """The fan-out removed the shared inbox (or it never was): back to the queue."""
        if self.joined:
            self.joined = self.draining = False
            await leases.release(self.qname, GROUP)

    def received(self, ids: Iterable[str]) -> None:
        """These ids were received from the shared inbox."""
        if self._from_inbox is None:
            self._from_inbox = set(ids)
        else:
            self._from_inbox.update(ids)

    def source_of(self, msg_id: str, *, done: bool = True) -> str:
        """Where ``msg_id`` is settled; ``done``: it is settled now (forgotten here)."""
        from_inbox = self._from_inbox
        if from_inbox and msg_id in from_inbox:
            if done:
                from_inbox.discard(msg_id)
            return self.inbox
        return self.qname

    def route(self, ids: Iterable[str], *, done: bool = True) -> dict[str, list[str]]:
        """``ids`` by the source they are settled in (see :meth:`source_of`)."""
        if not self._from_inbox:
            ids = list(ids)
            return {self.qname: ids} if ids else {}
        out: dict[str, list[str]] = {}
        for msg_id in ids:
            out.setdefault(self.source_of(msg_id, done=done), []).append(msg_id)
        return out

"""The per-queue ledger: who holds which message, and what each subscription may take next.

Pure and synchronous (no asyncio, no Redis): :class:`QueueLedger` knows, for one queue on this
node, each :class:`Subscription`'s window, its *outbox* (messages received from Redis for it and
not yet handed to its socket, with their byte count) and its *held* ids (written to a ``wsmq.v1``
socket, not acked yet), which subscription holds which id, and the round-robin plan that shares a
received batch. The consumer task (:mod:`wsmq.engine.consumer`) drives it: it receives
:meth:`QueueLedger.room` messages, gives them to :meth:`QueueLedger.hand_out`, writes what
:meth:`QueueLedger.take_batch` hands it, and settles or releases the ids the ledger returns.

Every id the ledger got is in exactly one place: an outbox, a batch being written, a
subscription's held ids, or returned to the driver (to release, or written in legacy mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from wsmq.queue.models import Message

__all__ = [
    "MESSAGE_OVERHEAD",
    "QueueLedger",
    "Subscriber",
    "Subscription",
    "plan_round_robin",
]

log = logging.getLogger("wsmq.engine")

#: What a message counts against its subscription's byte bound on top of its body's length in
#: characters (a cheap estimate of its bytes: nothing is encoded per message): id, numbers,
#: frame envelope.
MESSAGE_OVERHEAD = 128


def plan_round_robin(windows: Sequence[int], count: int, start: int = 0) -> tuple[list[int], int]:
    """Assign ``count`` messages to subscribers in turn, respecting each one's window.

    Subscriber ``i`` gets at most ``windows[i]`` messages; the turn starts at ``start`` so that
    successive batches keep rotating. Returns ``(owner index per message, next start)``; the plan
    is shorter than ``count`` when the windows cannot hold all of them.
    """
    n = len(windows)
    if n == 0:
        return [], 0
    left = [max(0, w) for w in windows]
    room = sum(left)
    plan: list[int] = []
    i = start % n
    while len(plan) < count and room > 0:
        if left[i] > 0:
            plan.append(i)
            left[i] -= 1
            room -= 1
        i = (i + 1) % n
    return plan, i


class Subscriber(Protocol):
    """What a subscriber (one WebSocket subscription) offers the engine.

    ``window()`` is how many more messages it can take *now*: for ``wsmq.v1`` typically
    ``max_unacked - subscription.unacked``, capped by the room in the socket's send buffer; for
    legacy sockets the buffer room alone. When it grows again without an ack (socket drained),
    call :meth:`Subscription.wake`. ``deliver`` writes one message and returns ``False`` when the
    socket is gone. ``ack_mode`` is ``True`` for ``wsmq.v1`` (delete on ``/ack``) and ``False``
    for legacy sockets (delete once written). A subscriber may also offer
    ``deliver_batch(msgs) -> int``: one socket write for many, returns how many it wrote.
    """

    @property
    def ack_mode(self) -> bool: ...

    def window(self) -> int: ...

    async def deliver(self, msg: Message) -> bool: ...


class Subscription:
    """One subscriber's subscription to one queue, as returned by ``DeliveryEngine.subscribe``."""

    __slots__ = (
        "_waker",
        "broken",
        "byte_bound",
        "closed",
        "delivering",
        "held_ids",
        "last_cost",
        "max_outbox_bytes",
        "outbox",
        "outbox_bytes",
        "qname",
        "subscriber",
        "writing",
    )

    def __init__(
        self,
        qname: str,
        subscriber: Subscriber,
        waker: Callable[[], None],
        max_outbox_bytes: int | None = None,
    ) -> None:
        self.qname = qname
        self.subscriber = subscriber
        self.closed = False
        #: ``deliver()`` returned False or raised: the socket is gone, give it nothing more.
        self.broken = False
        #: Ordered set of unacked message ids (v1 only); the ledger owns it.
        self.held_ids: dict[str, None] = {}
        self._waker = waker
        #: Received for this subscription, not yet handed to ``deliver()`` (its writer's queue).
        # A list, not a deque: an empty deque costs ~600 bytes, per subscription.
        self.outbox: list[Message] = []
        #: Bytes of the outbox (see :data:`MESSAGE_OVERHEAD`): received, not handed to the socket.
        self.outbox_bytes = 0
        #: No more is received for this subscription while its outbox holds this many bytes
        #: (``None``: messages only), so a large window cannot pile up server memory.
        self.max_outbox_bytes = max_outbox_bytes
        #: The byte bound held it back: its writer wakes the consumer once under the bound.
        self.byte_bound = False
        #: What the last message received for it counted: sizes the next receive to the room.
        self.last_cost = 0
        #: A writer (the consumer's task for this outbox) is running.
        self.writing = False
        #: Messages being written right now (handed to the subscriber, call not returned yet).
        self.delivering = 0

    @property
    def ack_mode(self) -> bool:
        return self.subscriber.ack_mode

    @property
    def unacked(self) -> int:
        """Messages delivered to this subscriber (v1) and not acked or released yet."""
        return len(self.held_ids)

    @property
    def held(self) -> tuple[str, ...]:
        """Ids of the unacked messages, oldest first."""
        return tuple(self.held_ids)

    def wake(self) -> None:
        """Tell the engine this subscriber's window opened (e.g. its socket buffer drained)."""
        if not self.closed:
            self._waker()

    def free(self) -> int:
        """``window()`` minus what the engine holds for it and the subscriber cannot see yet;
        0 while its outbox holds ``max_outbox_bytes``, else at most the messages the size of
        the last one that fit the room left (plus one)."""
        if self.closed or self.broken:
            return 0
        limit = self.max_outbox_bytes
        room = 0
        if limit is not None:
            room = limit - self.outbox_bytes
            if room <= 0:
                self.byte_bound = True
                return 0
        try:
            window = int(self.subscriber.window())
        except Exception:
            log.exception(
                "window() raised for queue %s; treating it as 0",
                self.qname,
                extra={"event": "window_failed", "queue": self.qname},
            )
            return 0
        # Messages in the outbox were taken from Redis for this subscriber already; the one being
        # written counts too in legacy mode (a v1 one is held, so window() already counts it).
        pending = len(self.outbox)
        if not self.subscriber.ack_mode:
            pending += self.delivering
        free = window - pending
        if room and self.last_cost:  # messages like the last one that fit the byte room
            free = min(free, room // self.last_cost + 1)
        return max(0, free)

    def under_byte_bound(self) -> bool:
        """Whether the byte bound held this subscription back and no longer does (once)."""
        if self.byte_bound and self.outbox_bytes < (self.max_outbox_bytes or 0):
            self.byte_bound = False
            return True
        return False

    def drop(self, msg_id: str) -> bool:
        """Forget a held id (acked or released); whether it was held."""
        if msg_id in self.held_ids:
            del self.held_ids[msg_id]
            return True
        return False

    def take_held(self) -> list[str]:
        """Forget every held id and return them (to release)."""
        ids = list(self.held_ids)
        self.held_ids.clear()
        return ids

    def __repr__(self) -> str:
        mode = "v1" if self.ack_mode else "legacy"
        return f"<Subscription {self.qname} {mode} unacked={self.unacked} closed={self.closed}>"


class QueueLedger:
    """The bookkeeping of one queue's subscriptions on this node (see the module docstring).

    ``unsettled``: ids received and not written yet (outboxes, writes in progress); what
    :meth:`leftovers` releases on shutdown. ``owner``: v1 id -> the subscription holding it.
    ``to_release``: ids :meth:`take_batch` did not hand out; the driver releases and clears it.
    """

    __slots__ = ("_plan_subs", "_plan_windows", "_rr", "owner", "subs", "to_release", "unsettled")

    def __init__(self) -> None:
        self.subs: list[Subscription] = []
        self.owner: dict[str, Subscription] = {}
        # A dict as a set: an empty dict is 64 bytes, an empty set 216; one per idle queue.
        self.unsettled: dict[str, None] = {}
        self.to_release: list[str] = []
        self._rr = 0
        # The subscriptions and windows :meth:`room` measured, for :meth:`hand_out`.
        self._plan_subs: Sequence[Subscription] = ()
        self._plan_windows: Sequence[int] = ()

    def add(self, sub: Subscription) -> None:
        self.subs.append(sub)

    def remove(self, sub: Subscription) -> list[str]:
        """Forget ``sub`` (not its held ids: see :meth:`Subscription.take_held`); returns the
        ids of its outbox, never handed to it, to release now."""
        if sub in self.subs:
            self.subs.remove(sub)
        released: list[str] = []
        if sub.outbox:
            released = [m.id for m in sub.outbox]
            self._forget(released)
            sub.outbox.clear()
            sub.outbox_bytes = 0
        owner = self.owner
        for msg_id in sub.held_ids:
            if owner.get(msg_id) is sub:
                del owner[msg_id]
        return released

    def room(self) -> int:
        """How many messages the subscriptions can take now (their free windows, summed);
        remembers the windows for the next :meth:`hand_out`."""
        subs = list(self.subs)
        windows = [s.free() for s in subs]
        free = sum(windows)
        if free > 0:
            self._plan_subs, self._plan_windows = subs, windows
        return free

    def drop_plan(self) -> None:
        """Forget what :meth:`room` measured (nothing was received): an idle queue keeps no
        lists of it."""
        self._plan_subs = ()
        self._plan_windows = ()

    def hand_out(self, msgs: list[Message]) -> list[Subscription]:
        """Share a received batch round-robin within the windows :meth:`room` measured: each
        message goes to one outbox. Returns the subscriptions whose outbox was empty before (they
        need a writer); ids beyond the windows go to :attr:`to_release`."""
        subs = self._plan_subs
        plan, self._rr = plan_round_robin(self._plan_windows, len(msgs), self._rr)
        self.drop_plan()
        self.unsettled.update(dict.fromkeys([m.id for m in msgs]))
        # Windows shrank between the plan and the receive (cannot happen today): release extras.
        if len(plan) < len(msgs):
            extra = [m.id for m in msgs[len(plan) :]]
            self._forget(extra)
            self.to_release.extend(extra)
        touched: list[Subscription] = []
        for msg, idx in zip(msgs, plan, strict=False):
            sub = subs[idx]
            if not sub.outbox:
                touched.append(sub)
            sub.outbox.append(msg)
            cost = len(msg.message) + MESSAGE_OVERHEAD
            sub.outbox_bytes += cost
            sub.last_cost = cost
        return touched

    def hand_out_extra(self, msgs: list[Message]) -> list[Subscription]:
        """:meth:`hand_out` for messages that came outside a receive (a send's hand-off),
        within the windows as they are now. A receive in flight keeps a plan, measured again
        after these took their room (what it brings beyond goes to :attr:`to_release`)."""
        in_flight = bool(self._plan_windows)
        self.room()
        touched = self.hand_out(msgs)
        if in_flight and self.room() <= 0:
            self.drop_plan()
        return touched

    def take_batch(self, sub: Subscription, limit: int, closing: bool) -> list[Message]:
        """Pop up to ``limit`` messages of ``sub``'s outbox to write (v1: held from now on, the
        client may ack before the write returns). A broken or closed ``sub``, or ``closing``,
        gets nothing: its ids go to :attr:`to_release`."""
        outbox = sub.outbox
        taken = outbox[:limit]
        del outbox[:limit]
        if outbox:
            sub.outbox_bytes -= sum([len(m.message) for m in taken]) + MESSAGE_OVERHEAD * len(taken)
        else:
            sub.outbox_bytes = 0
        if sub.broken or sub.closed or closing:
            released = [m.id for m in taken]
            self._forget(released)
            self.to_release.extend(released)
            return []
        if sub.subscriber.ack_mode:
            owner, held = self.owner, sub.held_ids
            for msg in taken:
                msg_id = msg.id
                prev = owner.get(msg_id)
                if prev is not None and prev is not sub:
                    prev.drop(msg_id)  # its vt expired and the message came back
                owner[msg_id] = sub
                held[msg_id] = None
        return taken

    def written(self, sub: Subscription, batch: list[Message], written: int) -> Sequence[str]:
        """The write of ``batch`` returned: ``written`` of them reached the socket. Returns the
        ids to release (the rest; in v1 those still held, an unsubscribe released the others);
        a short write marks ``sub`` broken."""
        unsettled = self.unsettled
        for msg in batch:
            unsettled.pop(msg.id, None)
        if written >= len(batch):
            return ()
        sub.broken = True
        failed = [m.id for m in batch[written:]]
        if not sub.subscriber.ack_mode:
            return failed
        gone = []
        owner = self.owner
        for msg_id in failed:
            if sub.drop(msg_id):
                if owner.get(msg_id) is sub:
                    del owner[msg_id]
                gone.append(msg_id)
        return gone

    def ack(self, sub: Subscription, ids: Sequence[str]) -> list[bool]:
        """Forget the ids ``sub`` holds among ``ids`` (acked); per id, whether it held it."""
        held = [sub.drop(msg_id) for msg_id in ids]
        owner = self.owner
        for msg_id, was_held in zip(ids, held, strict=True):
            if was_held and owner.get(msg_id) is sub:
                del owner[msg_id]
        return held

    def leftovers(self) -> list[str]:
        """Every id still received, outboxed or held: to release once the writers ended."""
        release = list(self.unsettled)
        release.extend(self.to_release)
        self.to_release.clear()
        for sub in self.subs:
            release.extend(sub.take_held())
            sub.outbox.clear()
            sub.outbox_bytes = 0
        self.unsettled.clear()
        self.owner.clear()
        return release

    def _forget(self, ids: list[str]) -> None:
        unsettled = self.unsettled
        for msg_id in ids:
            unsettled.pop(msg_id, None)

"""One consumer per (node, queue): batch-receive within the subscribers' windows and hand out.

The pieces the delivery engine (:mod:`wsmq.engine.delivery`) is built from:

- :func:`plan_round_robin` and :class:`Backoff` are pure (no I/O, no clock of their own);
- :class:`Subscriber` is the protocol a WebSocket session implements, :class:`Subscription` what
  the engine hands back for it (its unacked, in-flight message ids);
- :class:`QueueConsumer` consumes one queue with at most one asyncio task. Woken (realtime
  notification, fallback poll, an opened window) or at its timer at the queue's next visible
  score, it receives at most the subscribers' total free window (each bounded in messages
  and, through its outbox, in bytes) and hands each subscription its share. With nothing to
  wait for but a wake-up it parks: its task ends, and the next wake-up starts a new one, so an
  idle queue costs no task. Each subscription has its own writer task, so a slow socket delays
  only itself: the consumer goes on receiving for the others.

Shared state lives in :mod:`wsmq.engine.health` (Redis health episodes, the Redis
clock) and :mod:`wsmq.engine.settle` (group-committed deletes and releases, operations to
retry after an outage).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from wsmq.engine.flag import Flag
from wsmq.engine.health import TRANSIENT_ERRORS, RedisClock, RedisHealth
from wsmq.engine.settle import PendingOps, SettleBatcher
from wsmq.queue.errors import QueueNotFound

if TYPE_CHECKING:
    from wsmq.queue import Message, Queues

__all__ = [
    "Backoff",
    "ConsumerContext",
    "QueueConsumer",
    "Subscriber",
    "Subscription",
    "plan_round_robin",
]

log = logging.getLogger("wsmq.delivery")

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


@dataclass
class Backoff:
    """Exponential backoff with a cap and "equal jitter" (half fixed, half random)."""

    base: float = 0.05
    cap: float = 5.0
    attempt: int = 0
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def next(self) -> float:
        """Delay in seconds before the next attempt; each call doubles the ceiling."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


class Subscriber(Protocol):
    """What a subscriber (one WebSocket subscription) offers the engine.

    ``window()`` is how many more messages it can take *now*: for ``wsmq.v1`` typically
    ``max_unacked - subscription.unacked``, capped by the room in the socket's send buffer; for
    legacy sockets the buffer room alone. When it grows again without an ack (socket drained),
    call :meth:`Subscription.wake`. ``deliver`` writes one message and returns ``False`` when the
    socket is gone. ``ack_mode`` is ``True`` for ``wsmq.v1`` (delete on ``/ack``) and ``False``
    for legacy sockets (delete once written).
    """

    @property
    def ack_mode(self) -> bool: ...

    def window(self) -> int: ...

    async def deliver(self, msg: Message) -> bool: ...


class Subscription:
    """One subscriber's subscription to one queue, as returned by ``DeliveryEngine.subscribe``."""

    __slots__ = (
        "_held",
        "_waker",
        "broken",
        "byte_bound",
        "closed",
        "delivering",
        "last_cost",
        "max_outbox_bytes",
        "outbox",
        "outbox_bytes",
        "qname",
        "subscriber",
        "writer",
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
        self._held: dict[str, None] = {}  # ordered set of unacked message ids (v1 only)
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
        self.writer: asyncio.Task[None] | None = None
        #: Messages being written right now (handed to the subscriber, call not returned yet).
        self.delivering = 0

    @property
    def ack_mode(self) -> bool:
        return self.subscriber.ack_mode

    @property
    def unacked(self) -> int:
        """Messages delivered to this subscriber (v1) and not acked or released yet."""
        return len(self._held)

    @property
    def held(self) -> tuple[str, ...]:
        """Ids of the unacked messages, oldest first."""
        return tuple(self._held)

    def holds(self, msg_id: str) -> bool:
        return msg_id in self._held

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
            log.exception("window() raised for queue %s; treating it as 0", self.qname)
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

    def _hold(self, msg_id: str) -> None:
        self._held[msg_id] = None

    def _drop(self, msg_id: str) -> bool:
        if msg_id in self._held:
            del self._held[msg_id]
            return True
        return False

    def _take_all(self) -> list[str]:
        ids = list(self._held)
        self._held.clear()
        return ids

    def __repr__(self) -> str:
        mode = "v1" if self.ack_mode else "legacy"
        return f"<Subscription {self.qname} {mode} unacked={self.unacked} closed={self.closed}>"


@dataclass
class ConsumerContext:
    """What every consumer of one engine shares."""

    queues: Queues
    health: RedisHealth
    pending: PendingOps
    clock: RedisClock
    settle: SettleBatcher
    batch_size: int
    default_vt: int | None
    poll_interval: float
    on_exit: Callable[[QueueConsumer], None]
    #: Writer tasks of every consumer (stop() waits for them, bounded).
    writers: set[asyncio.Task[None]] = field(default_factory=set)


class QueueConsumer:
    """The consumer of one queue on this node: one task while it has work, none while parked."""

    __slots__ = (
        "_closing",
        "_missing_logged",
        "_parked",
        "_rr",
        "_skew_delay",
        "_wake",
        "_window_bound",
        "ctx",
        "owner",
        "qname",
        "subs",
        "task",
        "unsettled",
        "writers",
    )

    #: Shortest timer; grows while the clock estimate says "visible" but receive finds nothing.
    MIN_TIMER = 0.01
    #: Most messages handed to one ``deliver_batch`` call (one socket write).
    WRITE_BATCH = 128

    def __init__(self, qname: str, ctx: ConsumerContext) -> None:
        self.qname = qname
        self.ctx = ctx
        self.subs: list[Subscription] = []
        self.owner: dict[str, Subscription] = {}  # v1 message id -> subscription holding it
        # Ids received and not written yet (outboxes, writes in progress); on stop: released.
        # (a dict as a set: an empty dict is 64 bytes, an empty set 216; one per idle queue)
        self.unsettled: dict[str, None] = {}
        self.writers = 0  # writer tasks alive (they may outlive the consumer task)
        self._rr = 0
        self._wake = Flag()
        self._closing = Flag()
        self._skew_delay = self.MIN_TIMER
        self._missing_logged = False
        # The last cycle stopped because the windows were full (not because the queue was empty):
        # only then does an opening window (ack, finished write, drained socket) need a cycle.
        self._window_bound = False
        self.task: asyncio.Task[None] | None = None
        #: Idle with nothing to wait for but a wake-up: no task runs (a task and its coroutine
        #: frame cost ~1 KiB per queue, x 10k idle queues); :meth:`wake` starts a new one.
        self._parked = False

    def start(self) -> None:
        self._parked = False
        self.task = asyncio.create_task(self._run(), name=f"wsmq-consumer:{self.qname}")

    @property
    def parked(self) -> bool:
        """Idle with no task: the next wake-up starts one."""
        return self._parked

    def wake(self) -> None:
        self._wake.set()
        if self._parked:
            self.start()

    def window_opened(self) -> None:
        """An ack, a finished write or a drained socket: wake only if the windows held us."""
        if self._window_bound:
            self.wake()

    def close(self) -> None:
        """Stop after the current receive (engine shutdown); writers stop after their write."""
        self._closing.set()
        self.wake()

    @property
    def closing(self) -> bool:
        return self._closing.is_set() or not self.subs

    def add(self, sub: Subscription) -> None:
        self.subs.append(sub)
        self.wake()

    def remove(self, sub: Subscription) -> None:
        if sub in self.subs:
            self.subs.remove(sub)
        if sub.outbox:  # never handed to deliver(): release now, not after a stuck write
            self._release([m.id for m in sub.outbox])
            sub.outbox.clear()
            sub.outbox_bytes = 0
        for msg_id in sub.held:
            if self.owner.get(msg_id) is sub:
                del self.owner[msg_id]
        self.wake()

    async def _run(self) -> None:
        backoff = Backoff(cap=min(5.0, max(self.ctx.poll_interval, 0.5) * 5))
        try:
            while not self.closing:
                self._wake.clear()
                try:
                    timer = await self._cycle()
                    backoff.reset()
                except TRANSIENT_ERRORS as exc:
                    self.ctx.health.failed(exc)
                    await self._pause(backoff.next())
                    continue
                except QueueNotFound:
                    # Wait for a wake-up: the queue may be created later; never create it.
                    if not self._missing_logged:
                        log.warning("queue %s does not exist; waiting for it", self.qname)
                        self._missing_logged = True
                    timer = None
                except Exception:
                    log.exception("consumer of queue %s failed; retrying", self.qname)
                    await self._pause(backoff.next())
                    continue
                if timer is None and not self._wake.is_set():
                    # The usual idle state: park (end this task); the next wake() starts one.
                    # A finished task still holds its coroutine: let it go too.
                    self._parked = True
                    self.task = None
                    return
                await self._wait(timer)
        finally:
            if not self._parked:
                self.ctx.on_exit(self)

    async def _pause(self, delay: float) -> None:
        """Sleep through a backoff; only closing cuts it short (wake-ups do not)."""
        try:
            async with asyncio.timeout(delay):
                await self._closing.wait()
        except TimeoutError:
            pass

    async def _wait(self, delay: float | None) -> None:
        if self._wake.is_set():
            return
        try:
            async with asyncio.timeout(delay):
                await self._wake.waiter()
        except TimeoutError:
            pass

    async def _cycle(self) -> float | None:
        """Receive and hand out until the queue is empty or windows are full; return the timer."""
        q, ctx = self.qname, self.ctx
        if ctx.pending.deletes or ctx.pending.releases:
            await ctx.pending.flush(ctx.queues, q, ctx.health)
        nxt: float | None = None
        while True:
            if self.closing:
                return None
            subs = list(self.subs)
            windows = [s.free() for s in subs]
            free = sum(windows)
            if free <= 0:
                self._window_bound = True  # an ack, a write or Subscription.wake() wakes us
                return None
            self._window_bound = False
            n = min(ctx.batch_size, free)
            # The reply also says when the next message becomes visible (the timer below).
            msgs, nxt = await ctx.queues.receive_with_next(q, n, ctx.default_vt)
            if not ctx.health.healthy:
                ctx.health.ok()
            self._missing_logged = False
            if msgs:
                self._skew_delay = self.MIN_TIMER
                self._dispatch(msgs, subs, windows)
            if len(msgs) < n:
                break
        if self._wake.is_set():
            return None  # woken during the receive (a send under load): the next cycle comes now
        if nxt is None:
            return None
        delay = (nxt - ctx.clock.now_ms()) / 1000.0
        if delay > 0:
            return max(delay, self.MIN_TIMER)
        # "Visible already" but nothing received: clock skew or a message the receive skipped.
        delay, self._skew_delay = self._skew_delay, min(self._skew_delay * 2, ctx.poll_interval)
        return delay

    def _dispatch(self, msgs: list[Message], subs: list[Subscription], windows: list[int]) -> None:
        """Put each message in its subscription's outbox and make sure a writer runs (no wait)."""
        plan, self._rr = plan_round_robin(windows, len(msgs), self._rr)
        self.unsettled.update(dict.fromkeys([m.id for m in msgs]))
        # Windows shrank between the plan and the receive (cannot happen today): release extras.
        extra = [m.id for m in msgs[len(plan) :]]
        if extra:
            self._release(extra)
        touched: list[Subscription] = []
        for msg, idx in zip(msgs, plan, strict=False):
            sub = subs[idx]
            if not sub.outbox:
                touched.append(sub)
            sub.outbox.append(msg)
            cost = len(msg.message) + MESSAGE_OVERHEAD
            sub.outbox_bytes += cost
            sub.last_cost = cost
        for sub in touched:
            if sub.writer is None:
                self.writers += 1
                task = asyncio.get_running_loop().create_task(self._write(sub))
                sub.writer = task
                self.ctx.writers.add(task)
                task.add_done_callback(self.ctx.writers.discard)

    async def _write(self, sub: Subscription) -> None:
        """The writer of one subscription: deliver its outbox in order, settle each message.

        Takes up to :attr:`WRITE_BATCH` messages at a time: a subscriber with
        ``deliver_batch`` writes them with one socket write (see ``frames.py``); the others get
        one ``deliver()`` call per message.
        """
        q, settle, outbox = self.qname, self.ctx.settle, sub.outbox
        ack_mode = sub.subscriber.ack_mode
        deliver_batch = getattr(sub.subscriber, "deliver_batch", None)
        try:
            while outbox:
                batch = self._take_batch(sub, 1 if deliver_batch is None else self.WRITE_BATCH)
                if not batch:
                    continue
                sub.delivering = len(batch)
                try:
                    if deliver_batch is not None:
                        written = int(await deliver_batch(batch))
                    else:
                        written = int(bool(await sub.subscriber.deliver(batch[0])))
                except Exception:
                    log.exception("deliver() raised for queue %s; releasing the message", q)
                    written = 0
                finally:
                    sub.delivering = 0
                if sub.byte_bound and sub.outbox_bytes < (sub.max_outbox_bytes or 0):
                    sub.byte_bound = False
                    self.window_opened()  # under the byte bound again: receive for it
                for msg in batch:
                    self.unsettled.pop(msg.id, None)
                if not ack_mode:
                    for msg in batch[:written]:
                        settle.delete(q, msg.id)  # pipelined: the next receive does not wait
                if written >= len(batch):
                    continue
                sub.broken = True
                failed = [m.id for m in batch[written:]]
                if not ack_mode:
                    settle.release(q, failed)
                    continue
                gone = []
                for msg_id in failed:
                    if sub._drop(msg_id):  # else unsubscribe released it already
                        if self.owner.get(msg_id) is sub:
                            del self.owner[msg_id]
                        gone.append(msg_id)
                if gone:
                    settle.release(q, gone)
        finally:
            sub.writer = None
            self.writers -= 1
            self.window_opened()  # the room this outbox held is free again

    def _take_batch(self, sub: Subscription, limit: int) -> list[Message]:
        """Pop up to ``limit`` messages to write; release them instead if ``sub`` is over."""
        outbox, q = sub.outbox, self.qname
        taken = outbox[:limit]
        del outbox[:limit]
        if outbox:
            sub.outbox_bytes -= sum([len(m.message) for m in taken]) + MESSAGE_OVERHEAD * len(taken)
        else:
            sub.outbox_bytes = 0
        batch: list[Message] = []
        for msg in taken:
            msg_id = msg.id
            if sub.broken or sub.closed or self._closing.is_set():
                self.unsettled.pop(msg_id, None)
                self.ctx.settle.release(q, (msg_id,))
                continue
            if sub.subscriber.ack_mode:
                # Hold before writing: the client may ack before deliver() returns.
                prev = self.owner.get(msg_id)
                if prev is not None and prev is not sub:
                    prev._drop(msg_id)  # its vt expired and the message came back
                self.owner[msg_id] = sub
                sub._hold(msg_id)
            batch.append(msg)
        return batch

    def _release(self, ids: list[str]) -> None:
        unsettled = self.unsettled
        for msg_id in ids:
            unsettled.pop(msg_id, None)
        self.ctx.settle.release(self.qname, ids)

    def leftovers(self) -> list[str]:
        """Ids to release after the consumer and its writers ended (used by ``stop``)."""
        release = list(self.unsettled)
        for sub in self.subs:
            release.extend(sub._take_all())
            sub.outbox.clear()
            sub.outbox_bytes = 0
        self.unsettled.clear()
        self.owner.clear()
        return release

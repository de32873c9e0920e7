"""One consumer per (node, queue): batch-receive within the subscribers' windows and hand out.

:class:`QueueConsumer` is the thin asyncio driver of one queue's
:class:`~wsmq.engine.ledger.QueueLedger` (who holds what, windows, outboxes, round-robin; pure).
It runs at most one task: woken (realtime notification, fallback poll, an opened window) or at
its timer at the queue's next visible score, it receives :meth:`QueueLedger.room` messages, gives
them to the ledger, and starts a writer task for each subscription whose outbox got messages, so
a slow socket delays only itself. With nothing to wait for but a wake-up it parks: its task ends,
and the next wake-up starts a new one, so an idle queue costs no task.

Shared state lives in :mod:`wsmq.engine.health` (Redis health episodes, the Redis clock) and
:mod:`wsmq.engine.settle` (group-committed deletes and releases, operations to retry after an
outage).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from wsmq.backoff import Backoff
from wsmq.engine.devices import DeviceLeases
from wsmq.engine.fanout_runs import FanOutRuns
from wsmq.engine.flag import Flag
from wsmq.engine.health import TRANSIENT_ERRORS, RedisClock, RedisHealth
from wsmq.engine.ledger import (
    MESSAGE_OVERHEAD,
    QueueLedger,
    Subscriber,
    Subscription,
    plan_round_robin,
)
from wsmq.engine.plain_group import PlainGroup
from wsmq.engine.ports import QueueStore
from wsmq.engine.settle import PendingOps, SettleBatcher
from wsmq.protocol.names import split_source
from wsmq.queue.devices import DevicesChanging, QueueFansOut
from wsmq.queue.errors import QueueNotFound
from wsmq.queue.models import Message

__all__ = [
    "MESSAGE_OVERHEAD",
    "ConsumerContext",
    "QueueConsumer",
    "Subscriber",
    "Subscription",
    "plan_round_robin",
]

log = logging.getLogger("wsmq.engine")


@dataclass
class ConsumerContext:
    """What every consumer of one engine shares."""

    queues: QueueStore
    health: RedisHealth
    pending: PendingOps
    clock: RedisClock
    settle: SettleBatcher
    batch_size: int
    default_vt: int | None
    poll_interval: float
    on_exit: Callable[[QueueConsumer], None]
    #: The fan-out runs of fan-out queues, shared by their consumers on this node.
    fan_outs: FanOutRuns
    #: This node's device leases (a plain consumer takes one of the shared inbox).
    devices: DeviceLeases
    #: This node's hand-off token: a plain consumer that empties its queue parks there
    #: (``None``: no hand-offs; docs/delivery.md, "Hand-off").
    park: str | None = None
    #: Writer tasks of every consumer (stop() waits for them, bounded).
    writers: set[asyncio.Task[None]] = field(default_factory=set)


class QueueConsumer:
    """The consumer of one queue on this node: one task while it has work, none while parked."""

    __slots__ = (
        "_closing",
        "_copying",
        "_handoffs",
        "_missing_logged",
        "_parked",
        "_receiving",
        "_skew",
        "_wake",
        "_window_bound",
        "ctx",
        "device",
        "group",
        "ledger",
        "qname",
        "queue",
        "task",
        "writers",
    )

    #: Shortest timer; grows while the clock estimate says "visible" but receive finds nothing.
    MIN_TIMER = 0.01
    #: Most messages handed to one ``deliver_batch`` call (one socket write).
    WRITE_BATCH = 128

    def __init__(self, qname: str, ctx: ConsumerContext) -> None:
        #: What this consumer receives from: a queue, or a device inbox ``q@d``.
        self.qname = qname
        #: The queue (``q`` of ``q@d``) and the device (``None``: a plain consumer).
        self.queue, self.device = split_source(qname)
        #: A plain consumer's side of the queue's shared inbox (``None``: a device consumer).
        #: Joined while the queue has devices: it receives from ``q@~`` after a fan-out run
        #: (docs/delivery.md, Devices), until the fan-out removed the drained shared inbox.
        self.group = PlainGroup(self.queue) if self.device is None else None
        # Waiting for a fan-out run of the queue: it receives after the run, no wake needed.
        self._copying = False
        self.ctx = ctx
        self.ledger = QueueLedger()
        self.writers = 0  # writer tasks alive (they may outlive the consumer task)
        self._wake = Flag()
        self._closing = Flag()
        # "Visible already" but nothing received (clock skew): the next timers, doubling
        # (created on the first skew only: most queues never see one).
        self._skew: Backoff | None = None
        self._missing_logged = False
        # The last cycle stopped because the windows were full (not because the queue was empty):
        # only then does an opening window (ack, finished write, drained socket) need a cycle.
        self._window_bound = False
        self.task: asyncio.Task[None] | None = None
        # A parked receive is in flight: hand-offs that come meanwhile wait for its reply
        # (_handoffs), so that they take their place in send order (take_handoff).
        self._receiving = False
        self._handoffs: list[Message] | None = None
        #: Idle with nothing to wait for but a wake-up: no task runs (a parked task's frame is
        #: memory per idle queue); :meth:`wake` starts a new one.
        self._parked = False

    @property
    def subs(self) -> list[Subscription]:
        return self.ledger.subs

    def start(self) -> None:
        self._parked = False
        self.task = asyncio.create_task(self._run(), name=f"wsmq-consumer:{self.qname}")

    @property
    def copying(self) -> bool:
        """Waiting for a fan-out run of its queue (it receives once the run is done)."""
        return self._copying

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
        return self._closing.is_set() or not self.ledger.subs

    def add(self, sub: Subscription) -> None:
        self.ledger.add(sub)
        self.wake()

    def remove(self, sub: Subscription) -> None:
        released = self.ledger.remove(sub)
        if released:  # never handed to deliver(): release now, not after a stuck write
            self.release(released)
        self.wake()

    def route(self, ids: Sequence[str], *, done: bool = True) -> dict[str, list[str]]:
        """``ids`` by where they are settled: this consumer's source, or (a plain consumer's
        messages from the shared inbox) ``q@~``; ``done``: they are settled now."""
        if self.group is None:
            return {self.qname: list(ids)} if ids else {}
        return self.group.route(ids, done=done)

    def release(self, ids: Sequence[str]) -> None:
        """Release ``ids`` (group-committed) where each came from."""
        for source, part in self.route(ids).items():
            self.ctx.settle.release(source, part)

    def ack(self, sub: Subscription, ids: Sequence[str]) -> list[bool]:
        """Forget the acked ids ``sub`` holds (per id: whether it held it); wake if it opened."""
        held = self.ledger.ack(sub, ids)
        if any(held):
            self.window_opened()
        return held

    def leftovers(self) -> list[str]:
        """Ids to release after the consumer and its writers ended (used by ``stop``)."""
        return self.ledger.leftovers()

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
                except DevicesChanging:
                    # Devices subscribing in a burst: FanOutRuns retried and logged it already.
                    await self._pause(backoff.next())
                    continue
                except QueueNotFound:
                    # Wait for a wake-up: the queue may be created later; never create it.
                    if not self._missing_logged:
                        log.warning(
                            "queue %s does not exist; waiting for it",
                            self.qname,
                            extra={"event": "queue_missing", "queue": self.qname},
                        )
                        self._missing_logged = True
                    timer = None
                except Exception:
                    log.exception(
                        "consumer of queue %s failed; retrying",
                        self.qname,
                        extra={"event": "consumer_failed", "queue": self.qname},
                    )
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
        q, ctx, group = self.qname, self.ctx, self.group
        sources = [q]
        for name in (q,) if group is None else (q, group.inbox):
            if name in ctx.pending.deletes or name in ctx.pending.releases:
                await ctx.pending.flush(ctx.queues, name, ctx.health)
        queue_next: float | None = None
        if group is None or group.joined:
            # One run per wake-up for all of this node's consumers of the queue (FanOutRuns).
            self._copying = True
            try:
                result = await ctx.fan_outs.request(self.queue)
            finally:
                self._copying = False
            if result.live < 0:
                raise QueueNotFound()
            queue_next = result.next_visible
            if group is not None:
                group.draining = result.group and result.live == 0
                if not result.group:
                    await group.leave(ctx.devices)  # no device left, drained: the queue again
                elif result.live > 0:
                    sources = [group.inbox]  # the queue's messages are the fan-out's
                else:
                    sources = [group.inbox, q]  # no device left: drain the shared inbox first
        nxt: float | None = None
        for source in sources:
            try:
                timer, source_next = await self._receive_from(source)
            except QueueFansOut:
                if group is None or group.joined:
                    return self.MIN_TIMER  # a device registered meanwhile: fan out first
                await group.join(ctx.devices)  # a device registered: share the queue's copies
                return await self._cycle()
            if timer:
                return None  # closing or the windows are full
            if source_next is not None and (nxt is None or source_next < nxt):
                nxt = source_next
        if self._wake.is_set():
            return None  # woken during the receive (a send under load): the next cycle comes now
        if queue_next is not None and (nxt is None or queue_next < nxt):
            nxt = queue_next  # an inbox consumer also copies the queue's delayed messages
        return self._timer(nxt)

    async def _receive_from(self, source: str) -> tuple[bool, float | None]:
        """Receive from ``source`` until it has nothing visible left or the windows are full
        (``(True, _)``, or closing); else ``(False, next visible score of source)``."""
        ctx, ledger, group = self.ctx, self.ledger, self.group
        while True:
            if self.closing:
                return True, None
            free = ledger.room()
            if free <= 0:
                self._window_bound = True  # an ack, a write or Subscription.wake() wakes us
                return True, None
            self._window_bound = False
            n = min(ctx.batch_size, free)
            # The reply also says when the next message becomes visible (the timer below).
            if ctx.park is not None and group is not None and not group.joined:
                # Empty after this receive: sends hand their message to us (consumer parked).
                self._receiving = True
                try:
                    msgs, nxt = await ctx.queues.receive_with_next(
                        source, n, ctx.default_vt, fan_out_check=True, park=ctx.park
                    )
                except BaseException:
                    handed = self._end_receive()
                    if handed:
                        self._hand_out_extra(handed)  # the receive failed: they go alone
                    raise
                handed = self._end_receive()
                if handed:
                    msgs = merge_in_send_order(msgs, handed)
            else:
                msgs, nxt = await ctx.queues.receive_with_next(
                    source,
                    n,
                    ctx.default_vt,
                    fan_out_check=source == self.queue,
                    devices_only=group is not None and group.joined,
                )
            if not ctx.health.healthy:
                ctx.health.ok()
            self._missing_logged = False
            if msgs:
                self._skew = None
                if group is not None and source != self.queue:
                    group.received(m.id for m in msgs)
                self._dispatch(msgs)
            else:
                ledger.drop_plan()
            if len(msgs) < n:
                return False, nxt

    def _timer(self, nxt: float | None) -> float | None:
        """Seconds until the score ``nxt`` (epoch ms) is visible; ``None``: nothing to wait for."""
        ctx = self.ctx
        if nxt is None:
            return None
        delay = (nxt - ctx.clock.now_ms()) / 1000.0
        if delay > 0:
            return max(delay, self.MIN_TIMER)
        # "Visible already" but nothing received: clock skew or a message the receive skipped.
        if self._skew is None:
            self._skew = Backoff(base=self.MIN_TIMER, cap=ctx.poll_interval, rand=_no_jitter)
        return self._skew.next()

    def take_handoff(self, msg: Message) -> bool:
        """A send handed ``msg`` (received for this node already) to this consumer while it
        was parked: hand it out like a received one. ``False``: no room for it (closing, full
        windows, a fan-out queue now): the caller releases it."""
        group = self.group
        if self.closing or group is None or group.joined:
            return False
        if self._receiving:
            # A receive of ours is in flight: its reply may hold messages sent before this one
            # (Redis ran it first; the replies come on two connections). Handed out with it.
            if self._handoffs is None:
                self._handoffs = []
            self._handoffs.append(msg)
            return True
        if not any(s.free() > 0 for s in self.ledger.subs):
            return False
        self._hand_out_extra([msg])
        return True

    def _end_receive(self) -> list[Message] | None:
        """The parked receive is over: the hand-offs that came meanwhile."""
        self._receiving = False
        handed, self._handoffs = self._handoffs, None
        return handed

    def _hand_out_extra(self, msgs: list[Message]) -> None:
        self._start_writers(self.ledger.hand_out_extra(msgs))
        self._release_refused()

    def _dispatch(self, msgs: list[Message]) -> None:
        """Give a received batch to the ledger and make sure each touched outbox has a writer."""
        touched = self.ledger.hand_out(msgs)
        self._release_refused()
        self._start_writers(touched)

    def _start_writers(self, touched: list[Subscription]) -> None:
        for sub in touched:
            if not sub.writing:
                sub.writing = True
                self.writers += 1
                task = asyncio.get_running_loop().create_task(self._write(sub))
                self.ctx.writers.add(task)
                task.add_done_callback(self.ctx.writers.discard)

    def _release_refused(self) -> None:
        """Release what the ledger did not hand out (closed subscriptions, shrunk windows)."""
        refused = self.ledger.to_release
        if refused:
            self.release(refused[:])
            refused.clear()

    async def _write(self, sub: Subscription) -> None:
        """The writer of one subscription: deliver its outbox in order, settle each message.

        Takes up to :attr:`WRITE_BATCH` messages at a time: a subscriber with
        ``deliver_batch`` writes them with one socket write (see ``frames.py``); the others get
        one ``deliver()`` call per message.
        """
        q, settle, outbox, ledger = self.qname, self.ctx.settle, sub.outbox, self.ledger
        subscriber = sub.subscriber
        ack_mode = subscriber.ack_mode
        deliver_batch: Callable[[Sequence[Message]], Awaitable[int]] | None = getattr(
            subscriber, "deliver_batch", None
        )
        limit = 1 if deliver_batch is None else self.WRITE_BATCH
        closing = self._closing
        try:
            while outbox:
                batch = ledger.take_batch(sub, limit, closing.is_set())
                if not batch:
                    self._release_refused()
                    continue
                sub.delivering = len(batch)
                try:
                    if deliver_batch is not None:
                        written = int(await deliver_batch(batch))
                    else:
                        written = int(bool(await subscriber.deliver(batch[0])))
                except Exception:
                    log.exception(
                        "deliver() raised for queue %s; releasing the message",
                        q,
                        extra={"event": "deliver_failed", "queue": q},
                    )
                    written = 0
                finally:
                    sub.delivering = 0
                if sub.under_byte_bound():
                    self.window_opened()  # under the byte bound again: receive for it
                failed = ledger.written(sub, batch, written)
                if not ack_mode:
                    group = self.group
                    for msg in batch[:written]:
                        # pipelined: the next receive does not wait
                        settle.delete(q if group is None else group.source_of(msg.id), msg.id)
                if failed:
                    self.release(failed)
        finally:
            sub.writing = False
            self.writers -= 1
            self.window_opened()  # the room this outbox held is free again


def merge_in_send_order(received: list[Message], handed: list[Message]) -> list[Message]:
    """``received`` (score order) with ``handed`` (hand-offs, sent at once, no delay) each
    put before the first received message sent after it: an id starts with its send time
    (10 base-36 digits of µs, so string order is time order)."""
    out = list(received)
    for msg in sorted(handed, key=lambda m: m.id[:10]):
        sent = msg.id[:10]
        i = next((k for k, m in enumerate(out) if m.id[:10] > sent), len(out))
        out.insert(i, msg)
    return out


def _no_jitter() -> float:
    """The skew timer doubles exactly (``Backoff`` with its random half always at its top)."""
    return 1.0

"""Delivery engine: consume Redis queues for this node's WebSocket subscribers (SPEC §5).

One :class:`~wsmq.engine.consumer.QueueConsumer` task runs per queue that has at least one
local subscriber, and stops when the last one leaves. Consumers sleep until woken by:

- the queue's realtime notification (``PUBLISH {ns}:rt:{q}``, via the shared
  :class:`~wsmq.realtime.listener.RealtimeListener`);
- a timer at the queue's next visible score (delayed messages, expired visibility timeouts);
- a window opening (an ack, or :meth:`Subscription.wake` when a socket drained);
- the fallback poll: every ``poll_interval`` seconds ONE ``visible_counts`` round trip for all of
  this node's queues wakes those with visible messages (publishers without realtime).

Usage::

    engine = DeliveryEngine(queues, listener, poll_interval=1.0)
    await engine.start()
    sub = await engine.subscribe("orders", session)   # session implements Subscriber
    await engine.ack(sub, msg_id)                      # v1 clients
    await engine.unsubscribe(sub)                      # socket closed: unacked -> visible now
    await engine.stop()                                # shutdown: releases everything in flight

See ``docs/delivery.md`` for the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence

from wsmq.backoff import Backoff
from wsmq.engine.consumer import ConsumerContext, QueueConsumer
from wsmq.engine.devices import DeviceLeases
from wsmq.engine.fanout_runs import FanOutRuns
from wsmq.engine.health import TRANSIENT_ERRORS, RedisClock, RedisHealth
from wsmq.engine.keyed_locks import KeyedLocks
from wsmq.engine.ledger import Subscriber, Subscription, plan_round_robin
from wsmq.engine.ports import Notifications, QueueStore
from wsmq.engine.settle import DeleteNotApplied, PendingOps, SettleBatcher, apply_chunked
from wsmq.errors import WsmqError
from wsmq.protocol.names import (
    GROUP,
    inbox_name,
    is_valid_device,
    is_valid_qname,
    split_source,
)
from wsmq.queue.devices import FanOut
from wsmq.queue.errors import InvalidFormat, QueueNotFound
from wsmq.queue.handoff import parse_handoff

__all__ = [
    "DeleteNotApplied",
    "DeliveryEngine",
    "EngineStopped",
    "Subscriber",
    "Subscription",
    "plan_round_robin",
]

log = logging.getLogger("wsmq.engine")


class EngineStopped(WsmqError, RuntimeError, code="engine_stopped"):
    """``subscribe`` on an engine that is not started or is shutting down."""


class DeliveryEngine:
    """Hand messages from Redis queues to this node's subscribers.

    ``poll_interval``: seconds between fallback polls (one round trip for all queues).
    ``batch_size``: most messages taken from one queue per round trip (never more than the
    subscribers' free windows). ``default_vt``: visibility timeout for receives (``None``: the
    queue's own ``vt``). ``on_redis_error(exc)`` / ``on_redis_recovered(downtime_s)``: called
    once per outage episode (metrics, readiness); ``on_redis_failure(exc)``: once per failed
    call (an episode has one per retry). ``max_outbox_bytes``: per subscription, no more is
    received while the messages received for it and not yet handed to ``deliver()`` add up to
    this many bytes (``None``: only the windows bound it). ``stop_timeout``: bound, in seconds,
    for each phase of :meth:`stop`. ``device_retention``: seconds an unused device inbox is
    kept (docs/delivery.md, Devices); ``on_devices_removed(n)``: called when ``n`` were removed;
    ``max_devices_per_queue``: most devices one queue may have (0: no limit).
    ``handoff``: park idle consumers on their queue so that a send hands its message to this
    node directly, one round trip less (docs/delivery.md, "Hand-off"; RSMQ's key layout with a
    :class:`~wsmq.realtime.listener.RealtimeListener` only); ``on_handoff(taken)``: called for
    each message handed to this node (``taken`` false: released, no consumer could take it).
    """

    #: Re-measure the Redis clock offset this often (seconds).
    CLOCK_SYNC_EVERY = 60.0

    def __init__(
        self,
        queues: QueueStore,
        listener: Notifications | None,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        default_vt: int | None = None,
        on_redis_error: Callable[[BaseException], object] | None = None,
        on_redis_recovered: Callable[[float], object] | None = None,
        on_redis_failure: Callable[[BaseException], object] | None = None,
        max_outbox_bytes: int | None = None,
        stop_timeout: float = 5.0,
        device_retention: float = 7 * 86400.0,
        on_devices_removed: Callable[[int], object] | None = None,
        max_devices_per_queue: int = 1000,
        handoff: bool = True,
        on_handoff: Callable[[bool], object] | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be > 0")
        if not 1 <= batch_size <= 1000:  # the queue layer's batch receive limit
            raise ValueError("batch_size must be between 1 and 1000")
        self.queues = queues
        self.listener = listener
        self.poll_interval = poll_interval
        self.max_outbox_bytes = max_outbox_bytes
        self.stop_timeout = stop_timeout
        self.health = RedisHealth(on_redis_error, on_redis_recovered, on_failure=on_redis_failure)
        self.pending = PendingOps()
        self.clock = RedisClock()
        self.settle = SettleBatcher(queues, self.health, self.pending, self._on_notification)
        self.devices = DeviceLeases(
            queues, device_retention, on_devices_removed, max_devices_per_queue
        )
        #: This node's hand-off token (``None``: hand-offs off or not possible here).
        self.handoff_token: str | None = None
        if handoff and getattr(queues, "handoffs", False) and hasattr(listener, "listen_handoffs"):
            self.handoff_token = secrets.token_hex(8)
        self._on_handoff_hook = on_handoff
        self._ctx = ConsumerContext(
            queues=queues,
            health=self.health,
            pending=self.pending,
            clock=self.clock,
            settle=self.settle,
            batch_size=batch_size,
            default_vt=default_vt,
            poll_interval=poll_interval,
            on_exit=self._consumer_exited,
            fan_outs=FanOutRuns(queues, self.health, self.devices.retention_ms, self._fanned_out),
            devices=self.devices,
            park=self.handoff_token,
        )
        self._consumers: dict[str, QueueConsumer] = {}
        #: queue -> the device inboxes (``q@d``) this node consumes: they wake with the queue.
        self._inboxes: dict[str, set[str]] = {}
        # Consumers whose task ended (no subscriber left) while writers still run: stop()
        # must release what those writers hold.
        self._retired: set[QueueConsumer] = set()
        self._listened: set[str] = set()
        #: Queues the poll found with a key of the wrong type (warned once, until healed).
        self._broken: set[str] = set()
        # Per queue: a subscribe and an unsubscribe of one queue stay in order; queues don't wait.
        self._listener_locks = KeyedLocks()
        self._poll_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._running = False

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def queue_names(self) -> list[str]:
        """Queues this node consumes now (those with at least one local subscriber)."""
        return list(self._consumers)

    @property
    def redis_healthy(self) -> bool:
        """``False`` while an outage episode is in progress (for readiness)."""
        return self.health.healthy

    def stats(self) -> dict[str, int | bool]:
        """Numbers for metrics: consumers, subscriptions, unacked messages, pending retries."""
        subs = [s for c in self._consumers.values() for s in c.subs]
        return {
            "consumers": len(self._consumers),
            "subscriptions": len(subs),
            "unacked": sum(s.unacked for s in subs),
            "pending_ops": self.pending.count() + self.settle.queued(),
            "redis_healthy": self.health.healthy,
        }

    async def start(self) -> None:
        """Start the fallback poll and listen for realtime notifications."""
        if self._running:
            return
        self._running = True
        if self.listener is not None:
            self.listener.set_callback(self._on_notification)
            listen: Callable[[str, Callable[[str], None]], None] | None = getattr(
                self.listener, "listen_handoffs", None
            )
            if self.handoff_token is not None and listen is not None:
                try:
                    listen(self.handoff_token, self._on_handoff)
                except ValueError:  # a sharded (Cluster) listener: no hand-offs
                    self.handoff_token = self._ctx.park = None
            await self.listener.start()  # connect now: the first subscribe is confirmed sooner
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self.clock.sync(self.queues)
        self._poll_task = asyncio.create_task(self._poll_loop(), name="wsmq-delivery-poll")
        self.devices.start()

    async def stop(self) -> None:
        """Stop consuming and release every message in flight (visibility 0), in bounded time.

        Consumers finish the write in progress (at most ``stop_timeout`` s, then they are
        cancelled); unacked and undelivered messages are released in batches, legacy messages
        already written are deleted. What Redis cannot take within ``stop_timeout`` comes back
        by itself after its visibility timeout. Acks still waiting for a delete that did not
        land fail with :class:`DeleteNotApplied` (never ``True``), even when ``stop`` is
        cancelled.
        """
        if not self._running:
            return
        self._running = False
        try:
            await self._stop()
        finally:
            not_deleted = DeleteNotApplied("Redis unreachable: the delete was not applied")
            self.settle.fail_waiters(not_deleted)
            self.pending.fail_waiters(not_deleted)

    async def _stop(self) -> None:
        stop_handoffs = getattr(self.listener, "stop_handoffs", None)
        if self.handoff_token is not None and stop_handoffs is not None:
            # First: sends stop handing messages to a node that is about to stop consuming.
            with contextlib.suppress(Exception):
                await stop_handoffs()
        await self.devices.stop()
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None
        consumers = [*self._consumers.values(), *self._retired]
        for consumer in consumers:
            consumer.close()
        tasks = [c.task for c in consumers if c.task is not None and not c.task.done()]
        tasks += self._ctx.writers
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.stop_timeout)
            for task in late:
                task.cancel()
            if late:  # bounded too: a deliver() that swallows the cancel must not hang us
                await asyncio.wait(late, timeout=self.stop_timeout)
        for task in list(self._background):
            task.cancel()
        await self._ctx.fan_outs.close()
        for consumer in consumers:
            for source, ids in consumer.route(consumer.leftovers()).items():
                self.pending.add_releases(source, ids)
            for sub in consumer.subs:
                sub.closed = True
            consumer.subs.clear()
        self._consumers.clear()
        self._inboxes.clear()
        self._retired.clear()
        left = 0
        try:
            async with asyncio.timeout(self.stop_timeout):
                await self.settle.close(self.stop_timeout)
                left = self.pending.count()
                await self.pending.flush_all(self.queues, self.health)
                await self.devices.release_all()
                await self._sync_listener()
        except Exception as exc:  # Redis down, or TimeoutError: give up, vt brings them back
            log.warning(
                "shutdown: %d in-flight message(s) not released (%s); they return after their vt",
                self.pending.count(),
                type(exc).__name__,
                extra={"event": "shutdown_unreleased"},
            )
        else:
            if left:
                log.info(
                    "shutdown: released or settled %d in-flight message(s)",
                    left,
                    extra={"event": "shutdown_released"},
                )

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, qname: str, subscriber: Subscriber, *, device: str | None = None
    ) -> Subscription:
        """Start delivering ``qname``'s messages to ``subscriber``; returns its subscription.

        With ``device``, the subscription receives from that device's inbox of the queue
        (registered now if new; its :attr:`Subscription.qname` is the inbox name ``q@d``):
        see docs/delivery.md, Devices. Raises ``InvalidFormat`` for a bad queue name or device
        id, :class:`~wsmq.queue.devices.TooManyDevices` for a new device beyond
        ``max_devices_per_queue`` and :class:`EngineStopped` when the engine is not running; a
        Redis error registering a device propagates. The queue need not exist yet (nothing is
        created or deleted here).
        """
        if not is_valid_qname(qname):
            raise InvalidFormat("qname")
        if device is not None and not is_valid_device(device):
            raise InvalidFormat("device")
        if not self._running:
            raise EngineStopped("delivery engine is not running")
        source = qname
        if device is not None:
            await self.devices.acquire(qname, device)
            if not self._running:  # stopped meanwhile: stop() released the leases it knew
                await self.devices.release(qname, device)
                raise EngineStopped("delivery engine is not running")
            source = inbox_name(qname, device)
            self._inboxes.setdefault(qname, set()).add(source)
        consumer = self._consumers.get(source)
        if consumer is None:
            consumer = QueueConsumer(source, self._ctx)
            self._consumers[source] = consumer
            consumer.start()
        sub = Subscription(source, subscriber, consumer.window_opened, self.max_outbox_bytes)
        consumer.add(sub)
        if self.listener is not None and qname not in self._listened:
            connected = getattr(self.listener, "connected", None)  # not every transport has it
            if connected is None or connected.is_set():
                await self._sync_listener(qname)  # confirmed: a send from now on will wake us
            else:
                # Redis unreachable: do not hold the caller; the listener subscribes (and
                # reports the queue) when it reconnects, the fallback poll covers the gap.
                self._sync_listener_later(qname)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """End ``sub``; its unacked messages become visible again at once (not after vt).

        Idempotent. The queue itself is never touched otherwise (never deleted).
        """
        if sub.closed:
            return
        sub.closed = True
        consumer = self._consumers.get(sub.qname)
        if consumer is not None:
            consumer.remove(sub)
        ids = sub.take_held()
        routes = {sub.qname: ids} if consumer is None else consumer.route(ids)
        for source, part in routes.items():
            if part:
                await self._release(source, part)
        qname, device = split_source(sub.qname)
        if device is not None and self._running:
            try:
                await self.devices.release(qname, device)
            except TRANSIENT_ERRORS as exc:
                self.health.failed(exc)  # the lease expires by itself

    async def leave_device(self, qname: str, device: str) -> bool:
        """Remove ``device`` of ``qname`` and its inbox now; ``False`` if it was not registered.

        Raises :class:`~wsmq.queue.devices.DeviceInUse` while a subscription of the device
        (on this node or another) uses it."""
        if not is_valid_qname(qname):
            raise InvalidFormat("qname")
        if not is_valid_device(device):
            raise InvalidFormat("device")
        holding = self.devices.holding(qname, device)
        return await self.queues.leave_device(qname, device, self.devices.holder, holding=holding)

    async def ack(self, sub: Subscription, msg_id: str) -> bool:
        """Delete ``msg_id`` if ``sub`` holds it unacked; ``False`` if it does not.

        Returns ``True`` only once the delete landed in Redis. While Redis is unreachable the
        delete is kept and applied when it is back, and this waits until then; if the engine
        stops first, it raises :class:`DeleteNotApplied`, a ``ConnectionError`` (the message
        was not deleted, and comes back after its vt: at-least-once).
        """
        return (await self.ack_many(sub, [msg_id]))[0]

    async def ack_many(self, sub: Subscription, ids: Sequence[str]) -> list[bool]:
        """:meth:`ack` for several ids of one subscription: one wait for all their deletes.

        Returns, per id, whether ``sub`` held it (a repeated id counts once).
        """
        if sub.closed:
            return [False] * len(ids)
        consumer = self._consumers.get(sub.qname)
        if consumer is not None:
            held = consumer.ack(sub, ids)
        else:
            held = [sub.drop(msg_id) for msg_id in ids]
        dropped = [msg_id for msg_id, ok in zip(ids, held, strict=True) if ok]
        if not dropped:
            return held
        # Group commit: acks arriving together (from every socket) share one delete round trip;
        # waiting for the last id's round trip covers the others queued with it.
        settle = self.settle
        routes = {sub.qname: dropped} if consumer is None else consumer.route(dropped)
        for source, part in routes.items():
            for msg_id in part[:-1]:
                settle.delete(source, msg_id)
        waits = [settle.delete_and_wait(src, part[-1]) for src, part in routes.items()]
        if len(waits) == 1:
            await waits[0]
        else:  # a plain subscription's ids from the queue and from its shared inbox
            await asyncio.gather(*waits)
        if consumer is not None and consumer.group is not None and consumer.group.draining:
            consumer.wake()  # maybe the shared inbox's last message: its fan-out removes it
        return held

    async def nack_many(self, sub: Subscription, ids: Sequence[str], delay: int) -> list[bool]:
        """Give back the ids ``sub`` holds among ``ids``: no longer held, visible again in
        ``delay`` seconds (their receive count already counts the delivery). Per id, whether
        ``sub`` held it. A Redis error propagates: the dropped ids come back after their vt."""
        if sub.closed:
            return [False] * len(ids)
        consumer = self._consumers.get(sub.qname)
        held = consumer.ack(sub, ids) if consumer is not None else [sub.drop(i) for i in ids]
        dropped = [msg_id for msg_id, ok in zip(ids, held, strict=True) if ok]
        if dropped:
            routes = {sub.qname: dropped} if consumer is None else consumer.route(dropped)
            for source, part in routes.items():
                await self._change_visibility(source, part, delay)
            if delay == 0:
                self._on_notification(sub.qname)  # a local subscriber may take them now
        return held

    async def extend_many(self, sub: Subscription, ids: Sequence[str], seconds: int) -> list[bool]:
        """Keep the ids ``sub`` holds among ``ids`` hidden ``seconds`` from now (still held).
        Per id, whether ``sub`` held it."""
        held = [not sub.closed and msg_id in sub.held_ids for msg_id in ids]
        kept = list(dict.fromkeys(i for i, ok in zip(ids, held, strict=True) if ok))
        if kept:
            consumer = self._consumers.get(sub.qname)
            routes = {sub.qname: kept} if consumer is None else consumer.route(kept, done=False)
            for source, part in routes.items():
                await self._change_visibility(source, part, seconds)
        return held

    async def _change_visibility(self, qname: str, ids: list[str], vt: int) -> None:
        try:
            await self.queues.change_messages_visibility(qname, ids, vt)
        except QueueNotFound:
            pass  # deleted meanwhile, with its messages
        except TRANSIENT_ERRORS as exc:
            self.health.failed(exc)
            raise
        else:
            self.health.ok()

    async def _release(self, qname: str, ids: list[str]) -> None:
        try:
            await apply_chunked(self.queues, qname, ids, delete=False)
        except QueueNotFound:
            pass  # deleted meanwhile, with its messages
        except TRANSIENT_ERRORS as exc:
            self.health.failed(exc)
            self.pending.add_releases(qname, ids)  # what is left of them
        else:
            self.health.ok()
        self._on_notification(qname)  # another local subscriber may take them now

    # -- wake-ups ---------------------------------------------------------------------------

    def _on_notification(self, qname: str) -> None:
        """Wake ``qname``'s consumer if it has one, and the consumers of its device inboxes
        (also the realtime and release callback; ``qname`` may name an inbox)."""
        queue, device = split_source(qname)
        if device == GROUP:
            qname = queue  # the shared inbox's messages are the plain consumer's
        consumer = self._consumers.get(qname)
        if consumer is not None:
            consumer.wake()
        for inbox in self._inboxes.get(qname, ()):
            consumer = self._consumers.get(inbox)
            if consumer is not None:
                consumer.wake()

    def _on_handoff(self, payload: str) -> None:
        """A send handed a message to this node: its consumer takes it as if it had received
        it; with no consumer able to, it is released (visible now) and the node unparks."""
        parsed = parse_handoff(payload)
        if parsed is None:
            return
        qname, msg = parsed
        if not self._running:
            # Shutting down: released with the other in-flight messages (stop() flushes them).
            self.pending.add_releases(qname, [msg.id])
            if self._on_handoff_hook is not None:
                self._on_handoff_hook(False)
            return
        consumer = self._consumers.get(qname)
        taken = consumer is not None and consumer.take_handoff(msg)
        if consumer is not None and taken:
            # Parked for one message: receive again (what came meanwhile comes in a batch; an
            # empty queue parks the consumer again for the next send).
            consumer.wake()
        if not taken:
            self.settle.release(qname, [msg.id])
            self._unpark_later(qname)
        if self._on_handoff_hook is not None:
            self._on_handoff_hook(taken)

    def _unpark_later(self, qname: str) -> None:
        token = self.handoff_token
        if token is not None and self._running:
            self._background_task(self._unpark(qname, token))

    async def _unpark(self, qname: str, token: str) -> None:
        unpark = getattr(self.queues, "unpark", None)
        if unpark is not None:
            with contextlib.suppress(*TRANSIENT_ERRORS):  # else a send drops us when we are gone
                await unpark(qname, token)

    def _fanned_out(self, qname: str, result: FanOut) -> None:
        """A fan-out of ``qname`` ran: local inboxes got messages; count removals.

        Consumers waiting for a run of ``qname`` receive after it anyway: not woken (a wake
        would cost each of them a second cycle, and a second fan-out run)."""
        self.devices.removed(qname, result.removed)
        if result.moved:
            plain = self._consumers.get(qname)  # (not joined yet: its receive tells it to)
            if plain is not None and not plain.copying:
                plain.wake()
            for inbox in self._inboxes.get(qname, ()):
                consumer = self._consumers.get(inbox)
                if consumer is not None and not consumer.copying:
                    consumer.wake()

    def _listen_names(self) -> set[str]:
        """The queues whose realtime channel this node needs: every queue it consumes, or
        consumes a device inbox of."""
        return {split_source(name)[0] for name in self._consumers}

    def _consumer_exited(self, consumer: QueueConsumer) -> None:
        if self._consumers.get(consumer.qname) is consumer:
            del self._consumers[consumer.qname]
            if consumer.device is not None:
                inboxes = self._inboxes.get(consumer.queue)
                if inboxes is not None:
                    inboxes.discard(consumer.qname)
                    if not inboxes:
                        del self._inboxes[consumer.queue]
        self._retired = {c for c in self._retired if c.writers}
        if consumer.device is None and self._consumers.get(consumer.qname) is None:
            self._unpark_later(consumer.qname)  # no subscriber left: sends stop handing to us
        if consumer.writers:
            self._retired.add(consumer)
        if consumer.group is not None and consumer.group.joined and self._running:
            consumer.group.joined = consumer.group.draining = False  # last plain subscriber left
            self._background_task(self._release_group(consumer.queue))
        if self._running and consumer.queue in self._listened:
            self._sync_listener_later(consumer.queue)

    def _sync_listener_later(self, qname: str) -> None:
        self._background_task(self._sync_listener(qname))

    def _background_task(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    async def _release_group(self, qname: str) -> None:
        try:
            await self.devices.release(qname, GROUP)
        except TRANSIENT_ERRORS as exc:
            self.health.failed(exc)  # the lease expires by itself

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "delivery background task failed",
                exc_info=task.exception(),
                extra={"event": "background_failed"},
            )

    async def _sync_listener(self, qname: str | None = None) -> None:
        """Make the realtime subscriptions match the consumers (one queue, or all)."""
        if self.listener is None:
            return
        names = [qname] if qname is not None else list(self._listened | self._listen_names())
        for name in names:
            async with self._listener_locks.hold(name):
                want = self._running and (name in self._consumers or name in self._inboxes)
                try:
                    if want and name not in self._listened:
                        # The listener remembers the queue even when Redis is down (False).
                        self._listened.add(name)
                        if await self.listener.subscribe(name):
                            self._on_notification(name)  # re-check what was sent before it
                    elif not want and name in self._listened:
                        self._listened.discard(name)
                        await self.listener.unsubscribe(name)
                except TRANSIENT_ERRORS as exc:
                    # The poll loop retries; the fallback poll covers the gap meanwhile.
                    self.health.failed(exc)

    async def _poll_loop(self) -> None:
        """Fallback poll: one ``visible_counts`` round trip for all queues, wake the busy ones."""
        backoff = Backoff(cap=max(self.poll_interval, 1.0) * 5)
        delay = self.poll_interval
        while True:
            await asyncio.sleep(delay)
            delay = self.poll_interval
            try:
                await self._poll_once()
            except TRANSIENT_ERRORS as exc:
                self.health.failed(exc)
                delay = max(self.poll_interval, backoff.next())
            except Exception:
                log.exception("fallback poll failed", extra={"event": "poll_failed"})
            else:
                backoff.reset()

    def _note_broken(self, broken: set[str]) -> None:
        # Counted -1 by visible_counts, the others polled as usual; one warning per queue.
        for name in broken - self._broken:
            log.warning(
                "queue %s: its messages key is not a sorted set (written by another program?); "
                "the poll skips it",
                name,
                extra={"event": "queue_broken", "queue": name},
            )
        self._broken = broken

    async def _poll_once(self) -> None:
        # The queues of device inboxes too: their new messages are the inboxes' to copy.
        # A plain consumer's shared inbox too: another node's fan-out may copy to it (and empty
        # the queue) before this node's consumer learnt that its queue fans out.
        groups = [c.group.inbox for c in self._consumers.values() if c.group is not None]
        names = list(dict.fromkeys([*self._consumers, *self._inboxes, *groups]))
        if names:
            counts = await self.queues.visible_counts(names)
            self.health.ok()
            for name, count in counts.items():
                if count > 0:
                    self._on_notification(name)
            self._note_broken({name for name, count in counts.items() if count < 0})
        if self.pending.count():
            await self.pending.flush_all(self.queues, self.health)
        if self.clock.due(self.CLOCK_SYNC_EVERY) or not self.health.healthy:
            await self.clock.sync(self.queues)
            self.health.ok()
        if self._listened ^ self._listen_names():
            await self._sync_listener()

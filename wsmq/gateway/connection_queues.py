"""The queue side of one connection (:class:`ConnectionQueues`): its subscriptions, acks and
sends, and the release of everything when the socket ends.

Held by the :class:`~wsmq.gateway.connection.Connection`, which keeps the socket's life (read
loop, heartbeat, deadlines, replies, close); this object sees it only as a
:class:`QueueOwner`.

- A subscribe is set up behind the node's ``subscribe_gate`` and shielded: once the engine has
  the subscription, a cancelled handler unsubscribes it instead of leaving it consuming.
- It is the :class:`~wsmq.gateway.acks.AckTarget` of the connection's
  :class:`~wsmq.gateway.acks.AckPipeline`; an ``/unsubscribe`` and the release of a closed
  socket wait (bounded) for the acks read before them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Protocol

from redis.exceptions import RedisError

from wsmq.engine.consumer import Subscription
from wsmq.engine.delivery import EngineStopped
from wsmq.gateway.acks import AckPipeline, failure
from wsmq.gateway.log import ConnectionLog
from wsmq.gateway.state import GatewayState
from wsmq.gateway.subscriber import SocketSubscriber, SubscriberOwner
from wsmq.protocol import wire as p
from wsmq.protocol.actions import Action, DoExtend, DoNack
from wsmq.protocol.session import Session
from wsmq.queue import QueueError
from wsmq.queue.devices import DeviceInUse, TooManyDevices

__all__ = ["CLEANUP_TIMEOUT", "ConnectionQueues", "QueueOwner"]

#: Bound of each cleanup step of a closing socket (acks in flight, one release).
CLEANUP_TIMEOUT = 5.0


#: Queue errors of a ``/send`` answered with their own wire code (others: ``bad_frame``).
class QueueOwner(SubscriberOwner, Protocol):
    """The connection as its queue side sees it: the subscriptions' view, plus the execution
    of session actions (replies) and its log."""

    async def execute(self, actions: list[Action]) -> None:
        """Execute session actions in order (replies are written)."""

    @property
    def log(self) -> ConnectionLog:
        """The gateway logger with this connection's peer and user."""


class ConnectionQueues:
    """Subscriptions, acks, sends and the final release of one connection."""

    __slots__ = ("_owner", "_state", "acks", "session", "subs")

    def __init__(self, owner: QueueOwner, state: GatewayState) -> None:
        self._owner = owner
        self._state = state
        self.session: Session = owner.session
        self.subs: dict[str, tuple[Subscription, SocketSubscriber]] = {}
        #: Made by the connection on its first ack: legacy sockets never ack, and an idle one
        #: need not pay for it.
        self.acks: AckPipeline | None = None

    async def subscribe(self, qname: str, device: str | None = None) -> list[Action]:
        state = self._state
        try:
            async with state.subscribe_gate:
                kind = await state.ensure_queue(qname)
                if kind is None:
                    return self.session.subscribe_failed(
                        qname, p.ErrorCode.QUEUE_NOT_FOUND, f"queue {qname} does not exist"
                    )
                if kind == "group":
                    # Its consumer would compete with the group copiers and take messages
                    # away from the members (docs/delivery.md, Groups).
                    return self.session.subscribe_failed(
                        qname,
                        p.ErrorCode.IS_GROUP,
                        f"{qname} is a group: subscribe to its member queues",
                    )
                sub = SocketSubscriber(self._owner, qname)
                handle = await self._engine_subscribe(qname, sub, device)
                sub.handle = handle
        except EngineStopped:
            return self.session.subscribe_failed(
                qname, p.ErrorCode.UNAVAILABLE, "this node is shutting down"
            )
        except TooManyDevices as exc:
            return self.session.subscribe_failed(qname, p.ErrorCode.TOO_MANY_DEVICES, str(exc))
        except (RedisError, OSError):
            state.metrics.redis_errors.inc()
            return self.session.subscribe_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        except QueueError as exc:
            return self.session.subscribe_failed(qname, p.ErrorCode.INTERNAL_ERROR, str(exc))
        if self._owner.closing:  # the socket died while we were subscribing
            sub.closed = True
            await state.engine.unsubscribe(handle)
            return []
        self.subs[qname] = (handle, sub)
        state.metrics.subscriptions.inc()
        # The `subscribed` reply goes out before the first message of the queue does.
        await self._owner.execute(self.session.subscribe_done(qname))
        sub.active = True
        handle.wake()
        return []

    async def _engine_subscribe(
        self, qname: str, sub: SocketSubscriber, device: str | None
    ) -> Subscription:
        # Shielded: once the engine has added the subscription, a cancellation of this handler
        # (peer gone, host app with handler_cancellation) must not leave it behind, consuming
        # for a socket nobody reads; it is unsubscribed as soon as the engine hands it over.
        state = self._state
        engine = state.engine
        # A plain subscription calls the engine exactly as before devices existed.
        call = (
            engine.subscribe(qname, sub)
            if device is None
            else engine.subscribe(qname, sub, device=device)
        )
        task = state.spawn(call)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            sub.closed = True

            def orphaned(done: asyncio.Task[Subscription]) -> None:
                if not done.cancelled() and done.exception() is None:
                    state.spawn(engine.unsubscribe(done.result()))

            task.add_done_callback(orphaned)
            raise

    async def _acks_read_before(self) -> None:
        """Wait (bounded) for the acks already read: a release must not overtake them."""
        if self.acks is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await self.acks.drained()

    async def unsubscribe(self, qname: str) -> None:
        await self._acks_read_before()
        entry = self.subs.pop(qname, None)
        if entry is None:
            return
        handle, sub = entry
        sub.closed = True
        self._state.metrics.subscriptions.dec()
        try:
            await self._state.engine.unsubscribe(handle)
        except (RedisError, OSError):
            self._state.metrics.redis_errors.inc()
        except QueueError as exc:  # e.g. the queue was deleted meanwhile: nothing to release
            self._owner.log.info(
                "unsubscribe: %s", exc, extra={"event": "unsubscribe", "queue": qname}
            )

    async def leave(self, qname: str, device: str) -> list[Action]:
        """``/leave``: remove the device's inbox (the session unsubscribed this socket's own
        subscription as that device just before)."""
        session = self.session
        try:
            removed = await self._state.engine.leave_device(qname, device)
        except DeviceInUse:
            return session.leave_failed(
                qname, p.ErrorCode.DEVICE_IN_USE, f"device {device} is in use by a connection"
            )
        except (RedisError, OSError):
            self._state.metrics.redis_errors.inc()
            return session.leave_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        if removed:
            self._state.metrics.devices_removed.labels("leave").inc()
        return session.leave_done(qname, device, removed)

    async def send_message(self, qname: str, message: str) -> list[Action]:
        try:
            msg_id = await self._state.queues.send_message(qname, message)
        except QueueError as exc:
            code = p.QUEUE_ERROR_CODES.get(exc.name, p.ErrorCode.BAD_FRAME)
            return self.session.send_failed(qname, code, str(exc))
        except (RedisError, OSError):
            self._state.metrics.redis_errors.inc()
            return self.session.send_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        self._state.metrics.messages_sent.inc()
        return self.session.send_done(qname, msg_id)

    async def release_all(self) -> None:
        """Unsubscribe everything: this socket's unacked messages are visible again at once
        (vt 0) instead of after their vt. The acks the client sent before it went away are
        applied first (else they would be released).

        Runs in the connection's ``finally``, possibly in a cancelled task (a lost peer).
        """
        with contextlib.suppress(Exception):
            await self._acks_read_before()
        for _handle, sub in self.subs.values():
            sub.closed = True
        log = self._owner.log
        for qname in list(self.subs):
            try:
                async with asyncio.timeout(CLEANUP_TIMEOUT):
                    await self.unsubscribe(qname)
            except (TimeoutError, asyncio.CancelledError):
                log.warning(
                    "releasing a subscription timed out",
                    extra={"event": "release_timeout", "queue": qname},
                )
            except Exception:  # never let cleanup of one queue skip the others
                log.exception(
                    "releasing a subscription failed",
                    extra={"event": "release_fail", "queue": qname},
                )

    # AckTarget (the ack pipeline's view of this connection)

    def subscription(self, qname: str) -> Subscription | None:
        entry = self.subs.get(qname)
        return entry[0] if entry is not None else None

    async def ack_many(self, handle: Subscription, ids: list[str]) -> list[bool]:
        return await self._state.engine.ack_many(handle, ids)

    def count_acked(self, n: int) -> None:
        self._state.metrics.messages_acked.inc(n)

    async def nack_or_extend(self, action: DoNack | DoExtend) -> list[Action]:
        """Execute a ``/nack`` or ``/extend`` (the connection ran the acks read before it)."""
        session, qname, ids = self.session, action.qname, action.ids
        handle = self.subscription(qname)
        if handle is None:
            return session.acks_failed(qname, ids, p.ErrorCode.NOT_SUBSCRIBED, "not subscribed")
        engine, metrics = self._state.engine, self._state.metrics
        nack = isinstance(action, DoNack)
        try:
            if isinstance(action, DoNack):
                held = await engine.nack_many(handle, ids, action.delay)
            else:
                held = await engine.extend_many(handle, ids, action.seconds)
        except Exception as exc:
            code, detail = failure(exc, "nack" if nack else "extend", qname, self.count_redis_error)
            return session.acks_failed(qname, ids, code, detail)
        counter = metrics.messages_nacked if nack else metrics.messages_extended
        if any(held):
            counter.inc(len({i for i, ok in zip(ids, held, strict=True) if ok}))
        done = session.nacks_done if nack else session.extends_done
        return done(qname, ids, held)

    def count_redis_error(self) -> None:
        self._state.metrics.redis_errors.inc()

    def execute(self, actions: list[Action]) -> Coroutine[object, object, None]:
        # The connection's own coroutine, not one wrapping it: a frame less per ack group.
        return self._owner.execute(actions)

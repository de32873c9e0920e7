"""The queue side of a :class:`~wsmq.gateway.connection.Connection`: what its subscribe,
unsubscribe, ack and send actions do, and the release of everything when the socket ends.

A mixin of ``Connection`` (its methods take the connection as ``self``), kept apart so the
connection module holds the socket's life (read loop, heartbeat, deadlines, replies, close).

- A subscribe is set up behind the node's ``subscribe_gate`` and shielded: once the engine has
  the subscription, a cancelled handler unsubscribes it instead of leaving it consuming.
- The connection's :class:`~wsmq.gateway.acks.AckPipeline` sees it through the ``AckTarget``
  methods implemented here; an ``/unsubscribe`` and the release of a closed socket wait
  (bounded) for the acks read before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import RedisError

from wsmq.engine.delivery import EngineStopped
from wsmq.gateway.acks import AckPipeline
from wsmq.gateway.subscriber import SocketSubscriber
from wsmq.protocol import wire as p
from wsmq.queue import QueueError

if TYPE_CHECKING:
    from wsmq.gateway.app import GatewayState
    from wsmq.gateway.connection import Connection
    from wsmq.protocol.actions import Action
    from wsmq.protocol.session import Session

__all__ = ["QueueActions"]

log = logging.getLogger("wsmq.gateway")

#: Bound of each cleanup step of a closing socket (acks in flight, one release).
CLEANUP_TIMEOUT = 5.0


class QueueActions:
    """Subscriptions, acks, sends and the final release of one connection."""

    __slots__ = ()

    if TYPE_CHECKING:  # what Connection provides
        state: GatewayState
        session: Session
        subs: dict[str, tuple[Any, SocketSubscriber]]
        closing: bool
        _acks: AckPipeline | None

        async def execute(self, actions: list[Action]) -> None: ...

    async def _subscribe(self, qname: str) -> list[Action]:
        state = self.state
        try:
            async with state.subscribe_gate:
                if not await state.ensure_queue(qname):
                    return self.session.subscribe_failed(
                        qname, p.ErrorCode.QUEUE_NOT_FOUND, f"queue {qname} does not exist"
                    )
                sub = SocketSubscriber(cast("Connection", self), qname)
                handle = await self._engine_subscribe(qname, sub)
                sub.handle = handle
        except EngineStopped:
            return self.session.subscribe_failed(
                qname, p.ErrorCode.UNAVAILABLE, "this node is shutting down"
            )
        except (RedisError, OSError):
            state.metrics.redis_errors.inc()
            return self.session.subscribe_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        except QueueError as exc:
            return self.session.subscribe_failed(qname, p.ErrorCode.INTERNAL_ERROR, str(exc))
        if self.closing:  # the socket died while we were subscribing
            sub.closed = True
            await state.engine.unsubscribe(handle)
            return []
        self.subs[qname] = (handle, sub)
        state.metrics.subscriptions.inc()
        # The `subscribed` reply goes out before the first message of the queue does.
        await self.execute(self.session.subscribe_done(qname))
        sub.active = True
        handle.wake()
        return []

    async def _engine_subscribe(self, qname: str, sub: SocketSubscriber) -> Any:
        # Shielded: once the engine has added the subscription, a cancellation of this handler
        # (peer gone, host app with handler_cancellation) must not leave it behind, consuming
        # for a socket nobody reads; it is unsubscribed as soon as the engine hands it over.
        engine = self.state.engine
        task = self.state.spawn(engine.subscribe(qname, sub))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            sub.closed = True

            def orphaned(done: asyncio.Task[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    self.state.spawn(engine.unsubscribe(done.result()))

            task.add_done_callback(orphaned)
            raise

    async def _acks_read_before(self) -> None:
        """Wait (bounded) for the acks already read: a release must not overtake them."""
        if self._acks is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                await self._acks.drained()

    async def _unsubscribe(self, qname: str) -> None:
        await self._acks_read_before()
        entry = self.subs.pop(qname, None)
        if entry is None:
            return
        handle, sub = entry
        sub.closed = True
        self.state.metrics.subscriptions.dec()
        try:
            await self.state.engine.unsubscribe(handle)
        except (RedisError, OSError):
            self.state.metrics.redis_errors.inc()
        except QueueError as exc:  # e.g. the queue was deleted meanwhile: nothing to release
            log.info("unsubscribe: %s", exc, extra={"event": "unsubscribe", "queue": qname})

    # AckTarget (the ack pipeline's view of this connection)

    def subscription(self, qname: str) -> Any | None:
        entry = self.subs.get(qname)
        return entry[0] if entry is not None else None

    async def ack_many(self, handle: Any, ids: list[str]) -> list[bool]:
        result: list[bool] = await self.state.engine.ack_many(handle, ids)
        return result

    def count_acked(self, n: int) -> None:
        self.state.metrics.messages_acked.inc(n)

    def count_redis_error(self) -> None:
        self.state.metrics.redis_errors.inc()

    async def _send_message(self, qname: str, message: str) -> list[Action]:
        try:
            msg_id = await self.state.queues.send_message(qname, message)
        except QueueError as exc:
            code = p.QUEUE_ERROR_CODES.get(exc.name, p.ErrorCode.BAD_FRAME)
            return self.session.send_failed(qname, code, str(exc))
        except (RedisError, OSError):
            self.state.metrics.redis_errors.inc()
            return self.session.send_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        self.state.metrics.messages_sent.inc()
        return self.session.send_done(qname, msg_id)


    async def _release_all(self) -> None:
        # Runs in `finally`, possibly in a cancelled task (a lost peer): unsubscribing
        # releases this socket's unacked messages at once (vt 0) instead of after vt. Acks the
        # client sent before it went away are applied first (else they would be released).
        with contextlib.suppress(Exception):
            await self._acks_read_before()
        for qname in list(self.subs):
            self.subs[qname][1].closed = True
        for qname in list(self.subs):
            try:
                async with asyncio.timeout(CLEANUP_TIMEOUT):
                    await self._unsubscribe(qname)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("releasing a subscription timed out", extra={"queue": qname})
            except Exception:  # never let cleanup of one queue skip the others
                log.exception("releasing a subscription failed", extra={"queue": qname})

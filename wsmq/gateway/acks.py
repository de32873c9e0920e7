"""The acks of one WebSocket connection, executed in groups (:class:`AckPipeline`).

The read loop only queues an ``/ack`` frame's :class:`~wsmq.protocol.actions.DoAck`, all its
ids at once (:meth:`AckPipeline.put`); one worker task per connection takes everything queued,
deletes it with one ``DeliveryEngine.ack_many`` per queue (acks of every socket waiting
together share one Redis round trip there) and writes the replies, one per id, with one socket
write. Whatever the client sends meanwhile forms the next group, so under load the groups grow
by themselves and an isolated ack still goes out at once.

Bounds: at most ``limit`` acks (ids) are queued or being executed, or one frame's ids if it
holds more; beyond that the read loop waits in :meth:`put`, so the client's frames wait in TCP
buffers (backpressure), and a client that does not read its replies cannot make acks pile up
either (the worker waits for the socket to drain before it takes the next group).
:meth:`drained` lets an ``/unsubscribe`` or the release of a closed socket wait for the acks
read before it: an ack is never overtaken by a release.

``acked`` means deleted: while Redis is unreachable an ack's delete is kept by the engine and
its group waits until it landed (the pipeline's bound holds the read loop meanwhile); an ack
whose delete never landed (the node stopped first) is answered ``unavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Protocol

from redis.exceptions import RedisError

from wsmq.engine.consumer import Subscription
from wsmq.engine.flag import Flag
from wsmq.engine.settle import DeleteNotApplied
from wsmq.protocol import wire as p
from wsmq.protocol.actions import Action, DoAck
from wsmq.protocol.session import Session

__all__ = ["AckPipeline", "AckTarget", "failure"]

log = logging.getLogger("wsmq.gateway")


def failure(
    exc: BaseException, verb: str, qname: str, count_redis_error: Callable[[], None]
) -> tuple[str, str]:
    """The error code and detail answering each id of a failed ``/<verb>`` (a cancel is
    re-raised): ``unavailable`` for Redis, else ``internal_error`` (logged)."""
    if isinstance(exc, asyncio.CancelledError):
        raise exc
    if isinstance(exc, RedisError | OSError):
        if not isinstance(exc, DeleteNotApplied):  # its calls were counted
            count_redis_error()
        return p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
    log.error(f"{verb} failed", exc_info=exc, extra={"event": f"{verb}_fail", "queue": qname})
    return p.ErrorCode.INTERNAL_ERROR, f"{verb} failed"


class AckTarget(Protocol):
    """What the pipeline needs from its connection."""

    session: Session

    def subscription(self, qname: str) -> Subscription | None:
        """The engine's subscription handle for ``qname``, or ``None`` if not subscribed."""

    async def ack_many(self, handle: Subscription, ids: list[str]) -> list[bool]:
        """Delete the ids ``handle`` holds; per id whether it was held (engine semantics)."""

    def count_acked(self, n: int) -> None: ...

    def count_redis_error(self) -> None: ...

    async def execute(self, actions: list[Action]) -> None: ...


class AckPipeline:
    """Queue of a connection's acks and the single worker that executes them in groups."""

    __slots__ = (
        "_limit",
        "_queued",
        "_queued_ids",
        "_room",
        "_running",
        "_spawn",
        "_target",
        "_worker",
    )

    def __init__(
        self,
        target: AckTarget,
        limit: int,
        spawn: Callable[[Coroutine[object, object, None]], asyncio.Task[None]],
    ) -> None:
        self._target = target
        self._limit = max(1, limit)
        self._spawn = spawn
        self._queued: list[DoAck] = []
        self._queued_ids = 0  # ids in _queued
        self._running = 0  # ids taken by the worker, replies not written yet
        self._worker: asyncio.Task[None] | None = None
        self._room = Flag()  # set whenever pending may have dropped below the limit

    @property
    def pending(self) -> int:
        """Acks (ids) queued or being executed."""
        return self._queued_ids + self._running

    async def put(self, ack: DoAck) -> None:
        """Queue one frame's acks; waits while they would take more than ``limit`` acks
        pending (backpressure). A frame of more ids than ``limit`` waits for none pending."""
        n = len(ack.ids)
        while self.pending and self.pending + n > self._limit:
            self._room.clear()
            await self._room.wait()
        self._queued.append(ack)
        self._queued_ids += n
        if self._worker is None:
            self._worker = self._spawn(self._run())

    async def drained(self) -> None:
        """Wait until every ack queued so far was executed and answered (the caller bounds
        the wait; cancelling it leaves the worker running)."""
        worker = self._worker
        if worker is not None:
            await asyncio.wait([worker])

    async def _run(self) -> None:
        try:
            while self._queued:
                group, self._queued = self._queued, []
                self._running, self._queued_ids = self._queued_ids, 0
                try:
                    actions = await self._execute(group)
                    await self._target.execute(actions)
                finally:
                    self._running = 0
                    self._room.set()
        finally:
            self._worker = None
            self._room.set()

    async def _execute(self, group: list[DoAck]) -> list[Action]:
        """Delete the group (one engine call per queue) and return the replies: per queue, its
        ids in the order they were read."""
        by_queue: dict[str, list[str]] = {}
        for ack in group:
            ids = by_queue.get(ack.qname)
            if ids is None:
                by_queue[ack.qname] = list(ack.ids)
            else:
                ids += ack.ids
        names = list(by_queue)
        outcomes = await asyncio.gather(
            *(self._ack_queue(q, by_queue[q]) for q in names), return_exceptions=True
        )
        session = self._target.session
        actions: list[Action] = []
        for qname, outcome in zip(names, outcomes, strict=True):
            ids = by_queue[qname]
            if isinstance(outcome, BaseException):
                code, detail = failure(outcome, "ack", qname, self._target.count_redis_error)
                actions += session.acks_failed(qname, ids, code, detail)
                continue
            if outcome is None:
                actions += session.acks_failed(
                    qname, ids, p.ErrorCode.NOT_SUBSCRIBED, "not subscribed"
                )
                continue
            acked = sum(outcome)
            if acked:
                self._target.count_acked(acked)
            actions += session.acks_done(qname, ids, outcome)
        return actions

    async def _ack_queue(self, qname: str, ids: list[str]) -> list[bool] | None:
        handle = self._target.subscription(qname)
        if handle is None:
            return None
        return await self._target.ack_many(handle, ids)

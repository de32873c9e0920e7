"""Deletes and releases of the delivery engine: group commits, and retries after an outage.

- :class:`SettleBatcher` applies deletes (acks, legacy writes) and releases as *group commits*:
  everything queued while one round trip is in flight goes out in the next one, so many acks
  cost one ``delete_messages`` call instead of one each;
- :class:`PendingOps` remembers deletes and releases (visibility 0) that failed because Redis
  was down, so they are applied once it is back; an ack waiting for its delete waits there
  too, and is answered only once the delete landed (``acked`` means deleted).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from wsmq.engine.health import TRANSIENT_ERRORS, RedisHealth
from wsmq.engine.ports import QueueStore
from wsmq.errors import WsmqError
from wsmq.queue.errors import QueueNotFound

__all__ = ["CHUNK", "DeleteNotApplied", "PendingOps", "SettleBatcher", "apply_chunked"]

log = logging.getLogger("wsmq.engine")

#: Ids per Redis call when settling, so one huge backlog does not block Redis.
CHUNK = 500


async def apply_chunked(queues: QueueStore, qname: str, ids: list[str], *, delete: bool) -> None:
    """Delete ``ids`` (or release them: visibility 0), :data:`CHUNK` per round trip.

    Each applied chunk leaves ``ids``: after an error (or a cancel) it holds what is left.
    """
    while ids:
        part = ids[:CHUNK]
        if delete:
            await queues.delete_messages(qname, part)
        else:
            await queues.change_messages_visibility(qname, part, 0)
        del ids[:CHUNK]


class DeleteNotApplied(WsmqError, ConnectionError, code="delete_not_applied"):
    """An ack's delete never landed (Redis unreachable until the engine stopped): the message
    is still in its queue. Not a Redis call of its own (the failed calls were counted)."""


class PendingOps:
    """Deletes and releases to apply once Redis answers again (per queue, deduplicated).

    ``waiters``: futures of acks whose deletes are pending here; :meth:`flush` resolves them
    once the queue's deletes landed, :meth:`fail_waiters` (shutdown) fails the others.
    """

    def __init__(self) -> None:
        self.deletes: dict[str, dict[str, None]] = {}
        self.releases: dict[str, dict[str, None]] = {}
        self.waiters: dict[str, list[asyncio.Future[None]]] = {}

    def add_waiter(self, qname: str, fut: asyncio.Future[None]) -> None:
        """Resolve ``fut`` once the deletes pending for ``qname`` landed."""
        self.waiters.setdefault(qname, []).append(fut)

    def fail_waiters(self, exc: BaseException) -> None:
        """Fail every waiter still pending (shutdown: its delete was not applied)."""
        waiters, self.waiters = self.waiters, {}
        _fail([fut for futs in waiters.values() for fut in futs], exc)

    def add_deletes(self, qname: str, ids: Iterable[str]) -> None:
        _add(self.deletes, qname, ids)

    def add_releases(self, qname: str, ids: Iterable[str]) -> None:
        _add(self.releases, qname, ids)

    def count(self) -> int:
        return sum(map(len, self.deletes.values())) + sum(map(len, self.releases.values()))

    def qnames(self) -> list[str]:
        # A waiter alone (its group was cancelled after its deletes landed) is resolved too.
        return sorted(set(self.deletes) | set(self.releases) | set(self.waiters))

    async def flush(self, queues: QueueStore, qname: str, health: RedisHealth) -> None:
        """Apply this queue's pending operations; on failure keep what is left and re-raise."""
        dels = list(self.deletes.pop(qname, {}))
        rels = list(self.releases.pop(qname, {}))
        waiters = self.waiters.pop(qname, [])
        if not dels and not rels and not waiters:
            return
        try:
            await apply_chunked(queues, qname, dels, delete=True)
            _resolve(waiters)  # the deletes landed: the acks may be answered
            await apply_chunked(queues, qname, rels, delete=False)
        except QueueNotFound:
            dels, rels = [], []  # the queue was deleted with its messages: nothing to settle
            _resolve(waiters)
        finally:
            self.add_deletes(qname, dels)
            self.add_releases(qname, rels)
            if dels:
                self.waiters.setdefault(qname, []).extend(w for w in waiters if not w.done())
        health.ok()

    async def flush_all(self, queues: QueueStore, health: RedisHealth) -> None:
        for qname in self.qnames():
            await self.flush(queues, qname, health)


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(None)


def _fail(waiters: Iterable[asyncio.Future[None]], exc: BaseException) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # retrieved: the ack may be gone already


def _add(book: dict[str, dict[str, None]], qname: str, ids: Iterable[str]) -> None:
    new = dict.fromkeys(ids)
    if new:
        book.setdefault(qname, {}).update(new)


class SettleBatcher:
    """Group commit of deletes and releases, per queue.

    ``delete``/``release`` only queue ids; one flush task per queue applies what is queued with
    one ``delete_messages`` and one ``change_messages_visibility`` (vt 0) round trip, then takes
    whatever was queued meanwhile, and so on. Ids queued within one event-loop iteration (acks
    parsed from one TCP read, a batch of legacy writes) therefore share a round trip, and under
    load the groups grow by themselves; an isolated ack still goes out at once (no timer).

    Failures: a Redis outage moves the ids to :class:`PendingOps`, applied when Redis is back;
    a waiter (an ack) moves there with them and is resolved only once its delete landed, so an
    ``acked`` reply always means deleted. A deleted queue took its messages with it.
    """

    def __init__(
        self,
        queues: QueueStore,
        health: RedisHealth,
        pending: PendingOps,
        on_released: Callable[[str], None] = lambda qname: None,
    ) -> None:
        self._queues = queues
        self._on_released = on_released
        self._health = health
        self._pending = pending
        self._deletes: dict[str, list[str]] = {}
        self._releases: dict[str, list[str]] = {}
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def delete(self, qname: str, msg_id: str) -> None:
        """Queue one delete (no waiting)."""
        ids = self._deletes.get(qname)
        if ids is None:
            self._deletes[qname] = [msg_id]
            self._kick(qname)
        else:
            ids.append(msg_id)

    def release(self, qname: str, ids: Iterable[str]) -> None:
        """Queue releases (visibility 0; no waiting)."""
        self._releases.setdefault(qname, []).extend(ids)
        self._kick(qname)

    async def delete_and_wait(self, qname: str, msg_id: str) -> None:
        """Queue one delete and wait for the round trip that carries it (an ack)."""
        fut = self._waiters.get(qname)
        if fut is None:
            fut = self._waiters[qname] = asyncio.get_running_loop().create_future()
        self.delete(qname, msg_id)
        # Shielded: a cancelled ack must not cancel the group's future for the others.
        await asyncio.shield(fut)

    def queued(self) -> int:
        """Ids queued and not yet sent to Redis."""
        return sum(map(len, self._deletes.values())) + sum(map(len, self._releases.values()))

    def _kick(self, qname: str) -> None:
        if qname not in self._tasks:
            task = asyncio.get_running_loop().create_task(self._flush(qname))
            self._tasks[qname] = task

    async def _flush(self, qname: str) -> None:
        try:
            while True:
                dels = self._deletes.pop(qname, [])
                rels = self._releases.pop(qname, [])
                fut = self._waiters.pop(qname, None)
                if not dels and not rels:
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                    return
                try:
                    landed = await self._apply(qname, dels, rels)
                except asyncio.CancelledError:
                    if fut is not None and not fut.done():
                        self._pending.add_waiter(qname, fut)  # its deletes are pending there
                    raise
                except Exception as exc:
                    if fut is not None and not fut.done():
                        fut.set_exception(exc)
                        fut.exception()  # retrieved: no "never retrieved" warning if unawaited
                    else:
                        log.exception(
                            "settling messages of queue %s failed",
                            qname,
                            extra={"event": "settle_failed", "queue": qname},
                        )
                else:
                    if fut is not None and not fut.done():
                        if landed:
                            fut.set_result(None)
                        else:  # Redis is down: answered once PendingOps applied the deletes
                            self._pending.add_waiter(qname, fut)
        finally:
            del self._tasks[qname]

    async def _apply(self, qname: str, dels: list[str], rels: list[str]) -> bool:
        """Apply one group; whether its deletes landed (else they wait in PendingOps)."""
        try:
            await apply_chunked(self._queues, qname, dels, delete=True)
            if rels:
                await apply_chunked(self._queues, qname, rels, delete=False)
                self._on_released(qname)  # visible again: a local subscriber may take them
        except QueueNotFound:
            dels.clear()  # deleted meanwhile, messages included: nothing left to settle
            rels.clear()
            return True
        except TRANSIENT_ERRORS as exc:
            self._health.failed(exc)
            return not dels
        finally:
            # Whatever was not applied (outage, cancel) is retried later, deletes first.
            self._pending.add_deletes(qname, dels)
            self._pending.add_releases(qname, rels)
        self._health.ok()
        return True

    def fail_waiters(self, exc: BaseException) -> None:
        """Fail the acks still waiting here (shutdown cut :meth:`close` short)."""
        waiters, self._waiters = self._waiters, {}
        _fail(waiters.values(), exc)

    async def close(self, grace: float) -> None:
        """Let round trips in flight finish (bounded), then hand everything left (waiters
        included) to PendingOps."""
        tasks = list(self._tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=grace)
        for qname, ids in self._deletes.items():
            self._pending.add_deletes(qname, ids)
        for qname, ids in self._releases.items():
            self._pending.add_releases(qname, ids)
        self._deletes.clear()
        self._releases.clear()
        for qname, fut in self._waiters.items():
            if not fut.done():  # its deletes are pending now: answered when they land
                self._pending.add_waiter(qname, fut)
        self._waiters.clear()

"""The JSON shapes of queues, shared by the list and the detail endpoints (one shape for a UI).

Reads cost a fixed number of Redis round trips whatever the number of queues
(:meth:`QueueAdmin.overview` pipelines them), and a listing is shared: listings within
:data:`LISTING_TTL` seconds of each other (or while one is being read) get the same read, so
a busy read key costs Redis one listing a second, not one per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from wsmq.queue import QueueNotFound, Queues
from wsmq.queue import validation as v
from wsmq.queue.admin import QueueAdmin, QueueOverview

from .rates import RateSampler

__all__ = ["LISTING_TTL", "QueueViews"]

#: Seconds a queue listing is served again (the API's writes drop it at once).
LISTING_TTL = 1.0


class QueueViews:
    """Builds ``Queue`` objects (see ``docs/api.md``) from Redis."""

    def __init__(
        self,
        queues: Queues,
        admin: QueueAdmin,
        rates: RateSampler,
        *,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queues = queues
        self.admin = admin
        self.rates = rates
        self.ttl = LISTING_TTL if ttl is None else ttl
        self._clock = clock
        self._listing: asyncio.Task[list[dict[str, object]]] | None = None
        self._listed_at = 0.0

    def _view(
        self, qname: str, now: int, seen: QueueOverview, dlq_depth: int | None
    ) -> dict[str, object]:
        attrs = seen.attributes
        head = seen.head_sent
        dlq: dict[str, object] | None = None
        if attrs.dead_letter_queue:
            dlq = {"name": attrs.dead_letter_queue, "depth": dlq_depth}
        return {
            "name": qname,
            "visible": attrs.msgs - attrs.hiddenmsgs,
            "hidden": attrs.hiddenmsgs,
            "total": attrs.msgs,
            "totalsent": attrs.totalsent,
            "totalrecv": attrs.totalrecv,
            "totalexpired": attrs.totalexpired,
            "totalexceeded": attrs.totalexceeded,
            "oldestAge": None if head is None else round(max(0.0, (now - head) / 1000), 3),
            "vt": attrs.vt,
            "delay": attrs.delay,
            "maxsize": attrs.maxsize,
            "created": attrs.created,
            "modified": attrs.modified,
            "maxReceiveCount": attrs.max_receive_count,
            "messageTtl": attrs.message_ttl,
            "deadLetterQueue": dlq,
            "groupMembers": seen.members,
            "rate": self.rates.latest(qname),
        }

    async def _read_all(self) -> list[dict[str, object]]:
        names = await self.queues.list_queues()
        now, seen = await self.admin.overview(names)
        views: list[dict[str, object]] = []
        sources: dict[str, list[str]] = {}
        for q in names:
            if q not in seen:  # deleted meanwhile
                continue
            dlq = seen[q].attributes.dead_letter_queue
            found = seen.get(dlq) if dlq else None
            views.append(
                self._view(q, now, seen[q], None if found is None else found.attributes.msgs)
            )
            if dlq:
                sources.setdefault(dlq, []).append(q)
        for item in views:
            item["deadLetterFor"] = sources.get(str(item["name"]), [])
        return views

    async def all(self) -> list[dict[str, object]]:
        """Every queue, sorted by name, each with the queues using it as dead-letter queue
        (read at most every :attr:`ttl` seconds; concurrent callers share one read)."""
        task = self._listing
        if task is None or (task.done() and self._clock() - self._listed_at >= self.ttl):
            task = self._listing = asyncio.ensure_future(self._read_all())
            self._listed_at = self._clock()
            task.add_done_callback(self._listed)
        # Shielded: a client giving up does not cancel the read the others wait for.
        views = await asyncio.shield(task)
        return [dict(item) for item in views]  # callers may not change the shared copy

    def _listed(self, task: asyncio.Task[list[dict[str, object]]]) -> None:
        if task.cancelled() or task.exception() is not None:
            if self._listing is task:  # a failed read is not served again
                self._listing = None
        else:
            self._listed_at = self._clock()

    def invalidate(self) -> None:
        """Forget the shared listing (after a write through the API: it shows at once)."""
        self._listing = None

    async def dead_letter_sources(self, dlq: str) -> list[str]:
        """The queues whose dead-letter queue is ``dlq``, sorted (two round trips)."""
        found = await self.admin.dead_letter_queues(await self.queues.list_queues())
        return sorted(q for q, d in found.items() if d == dlq)

    async def detail(self, qname: str) -> dict[str, object]:
        """The queue ``qname`` with ``deadLetterFor`` (raises ``QueueNotFound``); a few round
        trips, never one per queue, and never cached (it answers the API's writes)."""
        qname = v.validate_qname(qname)
        names = await self.queues.list_queues()
        now, seen = await self.admin.overview([qname])
        if qname not in seen:
            raise QueueNotFound()
        dlq = seen[qname].attributes.dead_letter_queue
        depth: int | None = None
        if dlq:
            _, dlq_seen = await self.admin.overview([dlq])
            depth = dlq_seen[dlq].attributes.msgs if dlq in dlq_seen else None
        found = await self.admin.dead_letter_queues(names)
        item = self._view(qname, now, seen[qname], depth)
        item["deadLetterFor"] = sorted(q for q, d in found.items() if d == qname)
        return item

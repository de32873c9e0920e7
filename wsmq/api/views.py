"""The JSON shapes of queues, shared by the list and the detail endpoints (one shape for a UI)."""

from __future__ import annotations

import asyncio

from wsmq.queue import QueueAttributes, QueueNotFound, Queues
from wsmq.queue.admin import QueueAdmin
from wsmq.queue.errors import NotAGroup
from wsmq.queue.extras import F_DLQ
from wsmq.queue.models import text

from .rates import RateSampler

__all__ = ["QueueViews"]

_CONCURRENCY = 16


class QueueViews:
    """Builds ``Queue`` objects (see ``docs/api.md``) from Redis."""

    def __init__(self, queues: Queues, admin: QueueAdmin, rates: RateSampler) -> None:
        self.queues = queues
        self.admin = admin
        self.rates = rates

    async def _attributes(self, qname: str) -> QueueAttributes | None:
        try:
            return await self.queues.get_queue_attributes(qname)
        except QueueNotFound:
            return None

    async def one(
        self, qname: str, now_ms: int | None = None, groups: set[str] | None = None
    ) -> dict[str, object]:
        """The queue ``qname`` (raises ``QueueNotFound``); ``groups``: the group names, when
        the caller has them."""
        attrs = await self.queues.get_queue_attributes(qname)
        group_ops = self.queues.groups
        is_group = qname in groups if groups is not None else await group_ops.is_group(qname)
        members = await group_ops.members(qname) if is_group else None
        now = now_ms if now_ms is not None else await self.queues.now_ms()
        head = await self.admin.head_sent(qname)
        dlq: dict[str, object] | None = None
        if attrs.dead_letter_queue:
            dlq_attrs = await self._attributes(attrs.dead_letter_queue)
            depth = dlq_attrs.msgs if dlq_attrs is not None else None
            dlq = {"name": attrs.dead_letter_queue, "depth": depth}
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
            "groupMembers": members,
            "rate": self.rates.latest(qname),
        }

    async def all(self) -> list[dict[str, object]]:
        """Every queue, sorted by name, each with the queues using it as dead-letter queue."""
        names = await self.queues.list_queues()
        now = await self.queues.now_ms()
        groups = set(await self.queues.groups.names())
        sem = asyncio.Semaphore(_CONCURRENCY)

        async def view(q: str) -> dict[str, object] | None:
            async with sem:
                try:
                    return await self.one(q, now, groups)
                except (QueueNotFound, NotAGroup):  # deleted (or ungrouped) meanwhile
                    return None

        views = [x for x in await asyncio.gather(*(view(q) for q in names)) if x is not None]
        sources: dict[str, list[str]] = {}
        for item in views:
            dlq = item["deadLetterQueue"]
            if isinstance(dlq, dict):
                sources.setdefault(str(dlq["name"]), []).append(str(item["name"]))
        for item in views:
            item["deadLetterFor"] = sources.get(str(item["name"]), [])
        return views

    async def dead_letter_sources(self, dlq: str) -> list[str]:
        """The queues whose dead-letter queue is ``dlq``, sorted."""
        names = await self.queues.list_queues()
        sem = asyncio.Semaphore(_CONCURRENCY)

        async def target(q: str) -> str | None:
            async with sem:
                value = await self.queues.redis.hget(self.queues.keys.attributes(q), F_DLQ)
                return None if value is None else text(value)

        found = await asyncio.gather(*(target(q) for q in names))
        return [q for q, d in zip(names, found, strict=True) if d == dlq]

    async def detail(self, qname: str) -> dict[str, object]:
        """:meth:`one` plus ``deadLetterFor``."""
        item = await self.one(qname)
        item["deadLetterFor"] = await self.dead_letter_sources(qname)
        return item

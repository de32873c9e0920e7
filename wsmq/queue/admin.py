"""Operator views and actions over :class:`~wsmq.queue.Queues`: peek, purge, redrive, counters.

Beyond RSMQ and used by the HTTP API (``/api/``). Nothing here receives a message: peeking
reads the sorted set and the hash (``ZRANGE`` + ``HMGET``), so it changes no receive count and
no visibility.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import validation as v
from .errors import InvalidValue, QueueNotFound
from .ids import sent_ms
from .models import text, to_int
from .queues import Queues
from .scripts import run_script
from .slots import require_same_slot

__all__ = ["REDRIVE_STEP", "PeekedMessage", "QueueAdmin"]

#: Messages one purge or redrive script call handles, so no call blocks Redis for long.
REDRIVE_STEP = 1000


@dataclass(frozen=True, slots=True)
class PeekedMessage:
    """A message seen without receiving it. ``message`` holds at most the asked-for number of
    characters (``truncated`` says whether it was cut); ``length`` is the full length."""

    id: str
    message: str
    truncated: bool
    length: int
    rc: int
    fr: int
    sent: float
    visible_at: int

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "message": self.message,
            "truncated": self.truncated,
            "length": self.length,
            "rc": self.rc,
            "fr": self.fr,
            "sent": self.sent,
            "visibleAt": self.visible_at,
        }


class QueueAdmin:
    """Operator actions on the queues of one :class:`Queues` (same client, same namespace)."""

    def __init__(self, queues: Queues) -> None:
        self.queues = queues
        self.keys = queues.keys
        self.redis = queues.redis

    async def peek(self, qname: str, count: int, max_chars: int) -> list[PeekedMessage]:
        """Up to ``count`` messages in delivery order (lowest visibility score first), bodies
        cut to ``max_chars`` characters. Raises ``QueueNotFound``."""
        qname = v.validate_qname(qname)
        if not await self.queues.queue_exists(qname):
            raise QueueNotFound()
        reply: list[Any] = await self.redis.zrange(
            self.keys.messages(qname), 0, max(count, 1) - 1, withscores=True
        )
        pairs = [(member, float(score)) for member, score in reply]
        if not pairs:
            return []
        ids = [text(member) for member, _ in pairs]
        fields = [f for i in ids for f in (i, f"{i}:rc", f"{i}:fr")]
        values = await self.redis.hmget(self.keys.attributes(qname), fields)
        out: list[PeekedMessage] = []
        for n, (msg_id, score) in enumerate(zip(ids, (s for _, s in pairs), strict=True)):
            body, rc, fr = values[3 * n : 3 * n + 3]
            if body is None:
                continue  # deleted between the two reads
            full = text(body)
            out.append(
                PeekedMessage(
                    id=msg_id,
                    message=full[:max_chars],
                    truncated=len(full) > max_chars,
                    length=len(full),
                    rc=to_int(rc),
                    fr=to_int(fr),
                    sent=sent_ms(msg_id),
                    visible_at=int(score),
                )
            )
        return out

    async def head_sent(self, qname: str) -> float | None:
        """Send time (epoch ms) of the message next in line (lowest score), or None."""
        head = await self.redis.zrange(self.keys.messages(qname), 0, 0)
        return sent_ms(text(head[0])) if head else None

    async def purge(self, qname: str) -> int:
        """Delete every message of the queue (settings and counters stay); returns how many.

        Runs in steps of :data:`REDRIVE_STEP` messages: messages sent meanwhile may be deleted
        too, but no more than the queue held at the start (a producer as fast as the purge
        cannot keep it running). Raises ``QueueNotFound``."""
        qname = v.validate_qname(qname)
        keys = [self.keys.messages(qname), self.keys.attributes(qname)]
        total = 0
        limit: int | None = None
        while limit is None or total < limit:
            step = REDRIVE_STEP if limit is None else min(REDRIVE_STEP, limit - total)
            deleted, left = await run_script(self.redis, "purge", keys, [step])
            if limit is None:
                limit = int(deleted) + int(left)
            total += int(deleted)
            if int(deleted) == 0 or int(left) == 0:
                break
        return total

    async def redrive(self, dlq: str, target: str, count: int | None = None) -> int:
        """Move up to ``count`` (None: all those there at the start) messages from ``dlq`` to
        ``target``, oldest first; returns how many moved. Each message moves atomically with its
        id and body; its receive count starts again at 0. Raises ``QueueNotFound``,
        ``InvalidValue`` (also when ``target`` is ``dlq``: that would move messages in place,
        and "all" would never end)."""
        dlq = v.validate_qname(dlq)
        target = v.validate_qname(target, "to")
        if target == dlq:
            raise InvalidValue("to", 0, 0, "to must name another queue than the dead-letter queue")
        require_same_slot(self.keys, target, dlq)
        keys = [
            self.keys.messages(dlq),
            self.keys.attributes(dlq),
            self.keys.messages(target),
            self.keys.attributes(target),
        ]
        realtime = self.queues.publish_target(target)
        if count is not None and count < 1:
            raise InvalidValue("count", 1, 2**31, "count must be >= 1 (None moves all)")
        # "All" is what the dead-letter queue holds now, not what a busy producer adds meanwhile.
        limit = count if count is not None else int(await self.redis.zcard(keys[0]))
        if limit == 0:
            for qname in (dlq, target):
                if not await self.queues.queue_exists(qname):
                    raise QueueNotFound()
            return 0
        moved = 0
        while moved < limit:
            step = min(REDRIVE_STEP, limit - moved)
            n = int(await run_script(self.redis, "redrive", keys, [step, realtime]))
            moved += n
            if n < step:
                break
        return moved

    async def counters(self, qnames: Iterable[str]) -> dict[str, tuple[int, int]]:
        """``(totalsent, totalrecv)`` of each queue that exists (for rates)."""
        names = list(qnames)
        sem = asyncio.Semaphore(16)

        async def one(q: str) -> tuple[str, list[Any]]:
            async with sem:
                return q, await self.redis.hmget(
                    self.keys.attributes(q), ["vt", "totalsent", "totalrecv"]
                )

        replies = await asyncio.gather(*(one(q) for q in names))
        return {q: (to_int(r[1]), to_int(r[2])) for q, r in replies if r[0] is not None}

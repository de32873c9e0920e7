"""Operator views and actions over :class:`~wsmq.queue.Queues`: peek, purge, redrive, counters.

Beyond RSMQ and used by the HTTP API (``/api/``). Nothing here receives a message: peeking
reads the sorted set and the hash (``peek.lua``: ``ZRANGE`` + ``HMGET``, bodies cut in Redis),
so it changes no receive count and no visibility.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import validation as v
from .errors import InvalidValue, QueueNotFound
from .extras import F_DLQ, F_GROUP
from .ids import sent_ms
from .models import QueueAttributes, text, to_int
from .queues import Queues
from .scripts import run_script
from .slots import require_same_slot

__all__ = ["PEEK_FULL_BYTES", "REDRIVE_STEP", "PeekedMessage", "QueueAdmin", "QueueOverview"]

#: The attributes script's HMGET fields, in its order (``QueueAttributes.from_reply``).
_ATTRIBUTE_FIELDS = (
    "vt", "delay", "maxsize", "totalrecv", "totalsent", "created", "modified",
    "wsmq:maxrc", "wsmq:dlq", "wsmq:ttl", "wsmq:totalexpired", "wsmq:totalexceeded",
)  # fmt: skip

#: Messages one purge or redrive script call handles, so no call blocks Redis for long.
REDRIVE_STEP = 1000
#: Bytes of a body a peek fetches whole at least (so ``length`` is exact for any body of a
#: queue with a ``maxsize``: 65536 UTF-16 units are at most 196608 bytes of UTF-8).
PEEK_FULL_BYTES = 196_608


@dataclass(frozen=True, slots=True)
class PeekedMessage:
    """A message seen without receiving it. ``message`` holds at most the asked-for number of
    characters (``truncated`` says whether it was cut); ``length`` is the full length in
    characters (None for a body too large to fetch whole), ``size`` in bytes (UTF-8)."""

    id: str
    message: str
    truncated: bool
    length: int | None
    size: int
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
            "size": self.size,
            "rc": self.rc,
            "fr": self.fr,
            "sent": self.sent,
            "visibleAt": self.visible_at,
        }


@dataclass(frozen=True, slots=True)
class QueueOverview:
    """What a queue listing shows of one queue, read with the others in one pipeline."""

    attributes: QueueAttributes
    #: Send time (epoch ms) of the message next in line, or None.
    head_sent: float | None
    #: The member queues (sorted) when the queue is a group, else None.
    members: list[str] | None


class QueueAdmin:
    """Operator actions on the queues of one :class:`Queues` (same client, same namespace)."""

    def __init__(self, queues: Queues) -> None:
        self.queues = queues
        self.keys = queues.keys
        self.redis = queues.redis

    async def peek(self, qname: str, count: int, max_chars: int) -> list[PeekedMessage]:
        """Up to ``count`` messages in delivery order (lowest visibility score first), bodies
        cut to ``max_chars`` characters. Raises ``QueueNotFound``.

        Redis sends at most ``max(4 * max_chars, PEEK_FULL_BYTES)`` bytes of each body (a UTF-8
        character is at most 4 bytes): huge bodies are never copied whole to the node. The
        full ``length`` in characters is known for bodies up to that size, else None
        (``size``, in bytes, always is)."""
        qname = v.validate_qname(qname)
        cap = max(4 * max_chars, PEEK_FULL_BYTES)
        reply: list[Any] = await run_script(
            self.redis,
            "peek",
            [self.keys.messages(qname), self.keys.attributes(qname)],
            [max(count, 1), cap],
        )
        out: list[PeekedMessage] = []
        for n in range(0, len(reply), 6):
            msg_id, score, body, size, rc, fr = reply[n : n + 6]
            whole = int(size) <= cap
            full = text(body)  # cut, it ends on a character boundary (peek.lua)
            out.append(
                PeekedMessage(
                    id=text(msg_id),
                    message=full[:max_chars],
                    truncated=not whole or len(full) > max_chars,
                    length=len(full) if whole else None,
                    size=int(size),
                    rc=to_int(rc),
                    fr=to_int(fr),
                    sent=sent_ms(text(msg_id)),
                    visible_at=int(float(text(score))),
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
        """``(totalsent, totalrecv)`` of each queue that exists (for rates); one pipeline."""
        names = list(dict.fromkeys(qnames))
        pipe = self.redis.pipeline(transaction=False)
        for q in names:
            pipe.hmget(self.keys.attributes(q), ["vt", "totalsent", "totalrecv"])
        replies = await pipe.execute()
        return {
            q: (to_int(r[1]), to_int(r[2]))
            for q, r in zip(names, replies, strict=True)
            if r[0] is not None
        }

    async def overview(self, qnames: Iterable[str]) -> tuple[int, dict[str, QueueOverview]]:
        """Redis time (epoch ms) and the :class:`QueueOverview` of each queue of ``qnames``
        that exists, in three round trips whatever their number (a listing of thousands of
        queues must not cost thousands of round trips): ``TIME``, the group markers, then
        one pipeline of ``HMGET``, ``ZCARD``, ``ZCOUNT`` (hidden: scored after that time),
        ``ZRANGE 0 0`` (the head) and, for groups, ``SMEMBERS``. Not a transaction: each
        queue is read consistently enough for a view (a queue deleted in between is left
        out). On Redis Cluster the client splits the pipeline per node (one round trip each);
        no script spans slots."""
        names = list(dict.fromkeys(qnames))
        now = await self.queues.now_ms()  # not pipelined: Cluster pipelines refuse TIME
        first = self.redis.pipeline(transaction=False)
        for q in names:
            first.hget(self.keys.attributes(q), F_GROUP)
        markers = await first.execute()
        groups = {q for q, marker in zip(names, markers, strict=True) if marker}
        pipe = self.redis.pipeline(transaction=False)
        for q in names:
            messages = self.keys.messages(q)
            pipe.hmget(self.keys.attributes(q), list(_ATTRIBUTE_FIELDS))
            pipe.zcard(messages)
            pipe.zcount(messages, f"({now}", "+inf")
            pipe.zrange(messages, 0, 0)
            if q in groups:
                pipe.smembers(self.keys.members(q))
        replies = iter(await pipe.execute())
        out: dict[str, QueueOverview] = {}
        for q in names:
            fields, msgs, hidden, head = (next(replies) for _ in range(4))
            members = sorted(text(m) for m in next(replies)) if q in groups else None
            if fields[0] is None:  # deleted meanwhile (RSMQ's test: no vt, no queue)
                continue
            out[q] = QueueOverview(
                attributes=QueueAttributes.from_reply(fields, msgs, hidden),
                head_sent=sent_ms(text(head[0])) if head else None,
                members=members,
            )
        return now, out

    async def dead_letter_queues(self, qnames: Iterable[str]) -> dict[str, str]:
        """Each queue of ``qnames`` that has a dead-letter queue -> its name; one pipeline."""
        names = list(dict.fromkeys(qnames))
        pipe = self.redis.pipeline(transaction=False)
        for q in names:
            pipe.hget(self.keys.attributes(q), F_DLQ)
        found = await pipe.execute()
        return {q: text(d) for q, d in zip(names, found, strict=True) if d}

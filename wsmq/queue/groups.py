"""Groups (durable broadcast): the membership API and the copy step, ``Queues.groups``.

A group is an ordinary RSMQ queue whose ``:Q`` hash has the field ``wsmq:group``, plus a set of
member queue names (``KeyLayout.members``).  Sending to a group is sending to that queue, so
every publisher (``send_message``, ``/send``, ``wsmq send``, the npm ``rsmq`` package) stores
the message durably in the group first; a copier (:mod:`wsmq.engine.group_copier`) then
copies it into every member with :meth:`Groups.copy_messages` and deletes it from
the group.  Design and guarantees: docs/delivery.md, "Groups".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..connections import AnyRedis
from . import validation as v
from .errors import InvalidValue, NotAGroup, QueueExists, QueueNotFound
from .extras import F_GROUP
from .keys import KeyLayout
from .models import Message, text
from .scripts import run_script

if TYPE_CHECKING:
    from .queues import Queues

__all__ = ["COPY_MARKER_GRACE", "COPY_MARKER_TTL", "Groups"]

#: Seconds a copy marker lives while its group message may still be copied again (a copier
#: that died mid-batch is redone by another one after the group's vt).  The copier shortens
#: the markers to ``COPY_MARKER_GRACE`` once the group message is deleted, so this only bounds
#: how long a crashed copier's batch may wait for its redo without a member getting a second
#: copy (a member whose copy is still in its queue never gets a second one).
COPY_MARKER_TTL = 7 * 86_400
#: Seconds a copy marker outlives its deleted group message: covers a copier that stalled (not
#: died) past the group's vt and copies late.
COPY_MARKER_GRACE = 600


class Groups:
    """The group operations of one :class:`~wsmq.queue.Queues`, as its ``groups`` attribute:
    ``await queues.groups.add("news", "alice")``.  It wraps the ``Queues`` (its client, key
    layout, ``publish_target`` and ``delete_queue``) rather than mixing into it."""

    def __init__(self, queues: Queues) -> None:
        self._queues = queues

    @property
    def redis(self) -> AnyRedis:
        return self._queues.redis

    @property
    def keys(self) -> KeyLayout:
        return self._queues.keys

    async def is_group(self, qname: str) -> bool:
        """Whether ``qname`` is an existing group."""
        qname = v.validate_qname(qname)
        vt, marker = await self.redis.hmget(self.keys.attributes(qname), ["vt", F_GROUP])
        return vt is not None and bool(marker)

    async def add(self, group: str, *queues: str) -> int:
        """Add member ``queues`` to ``group``, creating the group (a queue with RSMQ's default
        settings; change them with ``set_queue_attributes``) if it does not exist.

        Returns how many queues were not members before.  Raises ``QueueNotFound`` for a
        member that does not exist, ``InvalidValue`` for a member that is a group or the group
        itself (no nesting, so no cycles), ``NotAGroup`` when ``group`` names a plain queue.
        """
        group = v.validate_qname(group, "group")
        members = list(dict.fromkeys(v.validate_qname(q) for q in queues))
        for member in members:
            if member == group:
                raise InvalidValue("qname", 0, 0, f"a group cannot be a member of itself: {group}")
        replies = await asyncio.gather(*(self._kind(m) for m in members))
        for member, kind in zip(members, replies, strict=True):
            if kind is None:
                raise QueueNotFound(f"Queue {member!r} not found")
            if kind == "group":
                raise InvalidValue(
                    "qname", 0, 0, f"{member} is a group: a group cannot be a member of a group"
                )
        await self._ensure_group(group)
        if not members:
            return 0
        return int(await self.redis.sadd(self.keys.members(group), *members))

    async def remove(self, group: str, *queues: str) -> int:
        """Remove member ``queues`` from ``group``; returns how many were members.  The group
        stays (with no members its messages wait in it).  Raises ``QueueNotFound``,
        ``NotAGroup``."""
        group = v.validate_qname(group, "group")
        names = [v.validate_qname(q) for q in queues]
        await self._require_group(group)
        if not names:
            return 0
        return int(await self.redis.srem(self.keys.members(group), *names))

    async def members(self, group: str) -> list[str]:
        """The member queue names of ``group``, sorted.  Raises ``QueueNotFound``,
        ``NotAGroup``."""
        group = v.validate_qname(group, "group")
        await self._require_group(group)
        return sorted(text(m) for m in await self.redis.smembers(self.keys.members(group)))

    async def names(self) -> list[str]:
        """Names of all groups in the namespace, sorted."""
        return sorted(text(m) for m in await self.redis.smembers(self.keys.groups()))

    async def delete(self, group: str) -> None:
        """Delete a group, its membership and the messages not copied yet (the members and
        their copies stay).  Raises ``QueueNotFound``, ``NotAGroup``."""
        group = v.validate_qname(group, "group")
        await self._require_group(group)
        await self._queues.delete_queue(group)

    # -- the copy step (used by the copier) ---------------------------------------------------

    async def copy_messages(
        self, member: str, messages: Sequence[Message], *, marker_ttl: int = COPY_MARKER_TTL
    ) -> list[str]:
        """Copy group ``messages`` (received from the group) into queue ``member`` in one
        script call; returns a status per message: ``new``, ``dup`` (copied before) or
        ``long`` (too long for the member's maxsize, not copied).

        A copy keeps the group message's id (so ``sent`` is the publish time and consumers of
        different members see the same id) and the member's own delay.  A copy marker per
        (message, member) makes a redo store nothing twice.  Raises ``QueueNotFound`` if the
        member does not exist.
        """
        member = v.validate_qname(member)
        if not messages:
            return []
        keys = [self.keys.messages(member), self.keys.attributes(member)]
        keys += [self.keys.copy_marker(member, m.id) for m in messages]
        args: list[str | int] = [self._queues.publish_target(member), marker_ttl]
        for m in messages:
            args += [m.id, m.message, v.utf16_length(m.message)]
        reply = await run_script(self.redis, "group_copy", keys, args)
        return [text(x) for x in reply]

    async def expire_copy_markers(
        self, members: Iterable[str], ids: Sequence[str], seconds: int = COPY_MARKER_GRACE
    ) -> None:
        """Shorten the copy markers of ``ids`` in ``members`` to ``seconds`` (after the group
        messages were deleted: no copier should copy them again)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                for msg_id in ids:
                    pipe.expire(self.keys.copy_marker(member, msg_id), seconds)
            await pipe.execute()

    # -- helpers --------------------------------------------------------------------------------

    async def kind(self, qname: str) -> str | None:
        """``None`` (no such queue), ``"queue"`` or ``"group"``, in one round trip."""
        return await self._kind(v.validate_qname(qname))

    async def _kind(self, qname: str) -> str | None:
        vt, marker = await self.redis.hmget(self.keys.attributes(qname), ["vt", F_GROUP])
        if vt is None:
            return None
        return "group" if marker else "queue"

    async def _require_group(self, group: str) -> None:
        kind = await self._kind(group)
        if kind is None:
            raise QueueNotFound(f"Group {group!r} not found")
        if kind != "group":
            raise NotAGroup(f"Queue {group!r} is not a group")

    async def _ensure_group(self, group: str) -> None:
        kind = await self._kind(group)
        if kind == "queue":
            raise NotAGroup(f"Queue {group!r} exists and is not a group")
        if kind is None:
            try:
                # RSMQ's defaults: vt 30, delay 0, maxsize 65536 (the largest: the group must
                # accept what any member could).
                await run_script(
                    self.redis, "create", [self.keys.attributes(group)],
                    [30, 0, 65536, "", F_GROUP, "1"],
                )  # fmt: skip
            except QueueExists:  # created meanwhile: by another add, or as a plain queue
                if await self._kind(group) != "group":
                    raise NotAGroup(f"Queue {group!r} exists and is not a group") from None
        # Registered after the group exists, as create_queue does (separate slots).
        await self.redis.sadd(self.keys.queues(), group)
        await self.redis.sadd(self.keys.groups(), group)

    async def forget_queue(self, qname: str) -> None:
        """Called by ``Queues.delete_queue`` after ``qname`` was deleted: drop its membership
        set, its registry entry, and its membership in every group (one pipeline; the sets
        live in different slots)."""
        groups = await self.names()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self.keys.members(qname))
            pipe.srem(self.keys.groups(), qname)
            for group in groups:
                pipe.srem(self.keys.members(group), qname)
            await pipe.execute()

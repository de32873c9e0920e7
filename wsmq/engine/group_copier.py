"""The group copier: moves each message sent to a group into every member queue.

Every gateway node runs one (started and stopped with the node); a publisher without a node can
run one in-process (``async with GroupCopier.from_url(url):``) or drain the groups once
(:meth:`GroupCopier.run_once`, ``wsmq group copy``).  Any number of copiers may run at once:
they compete for group messages like any consumers.

For one batch of a group: receive up to ``batch_size`` messages hidden for ``vt`` seconds, copy
them into each member (one script call per member, so members may live in different cluster
slots; a copy marker per (message, member) makes the copy idempotent), then delete them from
the group.  A copier that dies anywhere in between leaves the batch hidden in the group; after
``vt`` another copier receives it again and redoes it, and the markers (and the copies, which
keep the group message's id) stop a member from getting a second copy.  Design and
guarantees: docs/delivery.md, "Groups".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from wsmq.backoff import Backoff
from wsmq.engine.health import TRANSIENT_ERRORS
from wsmq.logs import OutageLog
from wsmq.protocol.names import is_valid_qname
from wsmq.queue import Message, Queues
from wsmq.queue.errors import NotAGroup, QueueNotFound
from wsmq.queue.groups import COPY_MARKER_GRACE, COPY_MARKER_TTL
from wsmq.realtime.listener import RealtimeListener

__all__ = ["CopyError", "GroupCopier", "MemberCopied"]

log = logging.getLogger("wsmq.groups")

#: ``hook(group, member, statuses)`` after each member copy landed (metrics, tests' fault
#: points); statuses as :meth:`wsmq.queue.groups.Groups.copy_messages` returns them.
MemberCopied = Callable[[str, str, list[str]], Awaitable[None] | None]
#: ``hook(group, reason)`` when copying a group went wrong (metrics): ``member_missing`` (a
#: member queue does not exist: its copies are skipped), ``slow`` (a batch ran past its
#: deadline and was released for a redo), ``failed`` (copying the group raised), ``redis``
#: (Redis did not answer; retried with back-off).
CopyError = Callable[[str, str], None]

#: Fraction of ``vt`` after which a copier stops starting member copies of its batch: past it,
#: another copier may already be redoing the batch.
_DEADLINE_FRACTION = 0.8


class _BatchExpired(Exception):
    """A batch ran past its deadline: abandoned (released for a redo), not an outage."""


class GroupCopier:
    """Copies group messages into member queues, woken by realtime notifications on the groups
    (when given a listener) and by a fallback poll every ``poll_interval`` seconds.

    ``vt``: seconds a batch stays hidden in the group while being copied (a crashed copier's
    batch is redone after that long).  ``member_concurrency``: member copies in flight at
    once per batch.
    """

    def __init__(
        self,
        queues: Queues,
        listener: RealtimeListener | None = None,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        vt: int = 30,
        member_concurrency: int = 16,
        marker_ttl: int = COPY_MARKER_TTL,
        marker_grace: int = COPY_MARKER_GRACE,
        on_member_copied: MemberCopied | None = None,
        on_error: CopyError | None = None,
        owns: bool = False,
    ) -> None:
        if poll_interval <= 0 or not 1 <= batch_size <= 1000 or vt < 1:
            raise ValueError("poll_interval must be > 0, batch_size 1..1000, vt >= 1")
        self.queues = queues
        self.listener = listener
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.vt = vt
        self.member_concurrency = max(1, member_concurrency)
        self.marker_ttl = marker_ttl
        self.marker_grace = marker_grace
        self.on_member_copied = on_member_copied
        self.on_error = on_error
        self._owns = owns
        self._groups: set[str] = set()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._missing_logged: set[tuple[str, str]] = set()
        self._failing: set[str] = set()  # groups whose last copy failed (logged once)
        #: Messages copied into members so far (copies newly stored, not counting redone ones).
        self.copies = 0
        #: Fallback polls (every followed group checked) done so far.
        self.polls = 0

    @classmethod
    def from_url(
        cls, url: str, *, ns: str = "rsmq", realtime: bool = True, **options: Any
    ) -> GroupCopier:
        """A copier with its own queue client and (``realtime=True``) listener on ``url``;
        both are closed by :meth:`stop`."""
        queues = Queues.from_url(url, ns=ns, realtime=True)
        listener = RealtimeListener(url, ns, layout=queues.layout) if realtime else None
        return cls(queues, listener, owns=True, **options)

    async def __aenter__(self) -> GroupCopier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start copying in the background."""
        if self._task is None:
            if self.listener is not None:
                self.listener.set_callback(self._notified)
            self._task = asyncio.create_task(self._run(), name="wsmq-group-copier")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop after the batch in hand (cancelled after ``grace`` s: a batch cut short is
        redone by another copier after ``vt``); close what :meth:`from_url` opened."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, grace)
            except TimeoutError:
                pass  # wait_for cancelled it
        if self._owns:
            if self.listener is not None:
                await self.listener.aclose()
            await self.queues.close()

    @property
    def groups(self) -> frozenset[str]:
        """The groups the background loop follows (listened to, when it has a listener)."""
        return frozenset(self._groups)

    # -- copying ----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Copy every visible message of every group now; returns the copies stored."""
        before = self.copies
        for group in await self.queues.groups.names():
            await self.copy_group(group)
        return self.copies - before

    async def copy_group(self, group: str) -> None:
        """Copy the visible messages of ``group`` until it has none (or the copier stops)."""
        while not self._closing:
            try:
                members = await self.queues.groups.members(group)
                if not members:
                    return  # its messages are kept, not dropped: they wait for a member
                msgs = await self.queues.receive_messages(group, self.batch_size, vt=self.vt)
            except (QueueNotFound, NotAGroup):
                return  # deleted since it was listed
            if not msgs:
                return
            try:
                await self._copy_batch(group, members, msgs)
            except _BatchExpired:
                self._error(group, "slow")
                log.warning(
                    "group %s: copying a batch took longer than %ds; released for a redo",
                    group,
                    self.vt,
                    extra={"event": "group_copy_slow", "queue": group},
                )
                return
            if len(msgs) < self.batch_size:
                return

    async def _copy_batch(self, group: str, members: list[str], msgs: Sequence[Message]) -> None:
        deadline = time.monotonic() + self.vt * _DEADLINE_FRACTION
        limit = asyncio.Semaphore(self.member_concurrency)

        async def copy(member: str) -> None:
            async with limit:
                if time.monotonic() > deadline:
                    raise _BatchExpired(group)
                try:
                    statuses = await self.queues.groups.copy_messages(
                        member, msgs, marker_ttl=self.marker_ttl
                    )
                except QueueNotFound:
                    self._member_missing(group, member)
                    return
                self._missing_logged.discard((group, member))
                self.copies += statuses.count("new")
                if "long" in statuses:
                    log.warning(
                        "group %s: %d message(s) longer than member %s's maxsize not copied",
                        group,
                        statuses.count("long"),
                        member,
                        extra={"event": "group_copy_too_long", "queue": member},
                    )
                if self.on_member_copied is not None:
                    result = self.on_member_copied(group, member, statuses)
                    if result is not None:
                        await result

        ids = [m.id for m in msgs]
        try:
            await asyncio.gather(*(copy(m) for m in members))
        except BaseException:
            # Not every member has its copies: leave the batch to be redone, sooner than vt.
            with contextlib.suppress(Exception):
                await self.queues.change_messages_visibility(group, ids, 0)
            raise
        # Every member has its copies (stored now or before): the group's message is done.
        await self.queues.delete_messages(group, ids)
        await self.queues.groups.expire_copy_markers(members, ids, self.marker_grace)

    def _error(self, group: str, reason: str) -> None:
        if self.on_error is not None:
            self.on_error(group, reason)

    def _member_missing(self, group: str, member: str) -> None:
        self._error(group, "member_missing")
        if (group, member) not in self._missing_logged:
            self._missing_logged.add((group, member))
            log.warning(
                "group %s: member queue %s does not exist; its copies are skipped",
                group,
                member,
                extra={"event": "group_member_missing", "queue": member},
            )

    # -- the background loop ----------------------------------------------------------------

    def _notified(self, qname: str) -> None:
        if qname in self._groups:
            self._dirty.add(qname)
            self._wake.set()

    async def _follow(self, groups: set[str]) -> None:
        """Listen to exactly ``groups``; a newly followed group is checked at once."""
        listener = self.listener
        added, removed = groups - self._groups, self._groups - groups
        if listener is not None:
            for group in removed:
                await listener.unsubscribe(group)
            for group in added:
                await listener.subscribe(group)
        # After subscribing: from now on a send to a followed group wakes the copier.
        self._groups = groups
        self._dirty |= added

    async def _copy_groups(self, groups: list[str]) -> None:
        """Copy ``groups`` concurrently; a group failing for its own reason (its settings
        changed by another program, ...) is logged once and does not stop the others; a Redis
        outage is raised to the loop."""
        results = await asyncio.gather(
            *(self.copy_group(g) for g in groups), return_exceptions=True
        )
        transient: BaseException | None = None
        for group, result in zip(groups, results, strict=True):
            if result is None:
                self._failing.discard(group)
            elif isinstance(result, TRANSIENT_ERRORS):
                self._error(group, "redis")
                transient = result
            elif isinstance(result, Exception):
                self._error(group, "failed")
                if group not in self._failing:
                    self._failing.add(group)
                    log.error(
                        "group %s: copying failed: %r",
                        group,
                        result,
                        extra={"event": "group_copy_failed", "queue": group},
                    )
            else:
                raise result  # CancelledError and the like
        if transient is not None:
            raise transient

    async def _run(self) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        outage = OutageLog(log, "group copier")
        poll_due = True
        while not self._closing:
            try:
                if poll_due:
                    # A name another program put into the registry cannot stop the others.
                    listed = await self.queues.groups.names()
                    await self._follow({g for g in listed if is_valid_qname(g)})
                    due = set(self._groups)
                    self.polls += 1
                else:
                    due = self._dirty & self._groups
                self._dirty.clear()
                await self._copy_groups(sorted(due))
                backoff.reset()
                outage.recovered()
            except TRANSIENT_ERRORS as exc:
                outage.failed(f"{type(exc).__name__}: {exc}")
                self._dirty |= self._groups  # redo everything once Redis answers
                await backoff.sleep()
                continue
            except Exception:
                log.exception("group copier: unexpected error", extra={"event": "group_error"})
                await backoff.sleep()
                continue
            self._wake.clear()
            if self._dirty:
                poll_due = False
                continue
            try:
                async with asyncio.timeout(self.poll_interval):  # no extra task, unlike wait_for
                    await self._wake.wait()
                poll_due = False
            except TimeoutError:
                poll_due = True

"""The :class:`Queues` API: RSMQ operations over one redis-py asyncio client.

Every operation that reads the clock runs as one Lua script that calls Redis ``TIME`` itself,
so send, receive, their batch forms and change-visibility are one round trip each and the local
clock is never used.  See docs/queue.md for the layout and the differences from RSMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Literal, Unpack

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from ..connections import AnyRedis, redis_from_url, redis_retry
from . import devices as dev
from . import validation as v
from .errors import NoAttributeSupplied, QueueExists, QueueNotFound
from .extras import QueueSettings, dead_letter_of, extras_pairs
from .groups import Groups
from .ids import random_suffix
from .keys import KeyLayout
from .models import Message, QueueAttributes, messages_from_reply, text
from .scripts import run_script
from .slots import group_by_slot, require_same_slot

__all__ = ["Queues"]

# Most expired/over-received messages a single receive call drops or moves, so one call never
# blocks Redis for long; the rest are handled by the following calls.
DROP_BUDGET = 1000
# Seconds a send's marker (KeyLayout.send_marker) lives.  redis-py's Retry re-sends a script
# call whose reply was lost with the same ARGV, and the marker makes that replay return the first
# id instead of storing a second copy, so it must outlast the client's whole retry window.
SEND_MARKER_TTL = 60
Layout = Literal["rsmq", "cluster"]


class Queues:
    """RSMQ-compatible queues in one Redis namespace.

    Create with :meth:`from_url` (owns its connection pool) or wrap an existing
    ``redis.asyncio.Redis`` (or ``RedisCluster``) client.  With ``realtime=True`` every send
    publishes the queue size on ``{ns}:rt:{qname}`` exactly as RSMQ's realtime option does.

    ``layout="rsmq"`` (the default on a single server) is RSMQ's key layout; ``"cluster"``
    (the default, and the only choice, on a Redis Cluster) hash-tags each queue's keys into one
    slot and notifies over sharded pub/sub; see docs/scaleout.md.

    Groups are :attr:`groups` (a :class:`~wsmq.queue.groups.Groups` wrapping this object):
    ``queues.groups.add``, ``remove``, ``members``, ``names``, ``delete``, ...
    """

    def __init__(
        self,
        redis: AnyRedis,
        *,
        ns: str = "rsmq",
        realtime: bool = False,
        owns_client: bool = False,
        layout: Layout | None = None,
    ) -> None:
        on_cluster = isinstance(redis, RedisCluster)
        if layout is None:
            layout = "cluster" if on_cluster else "rsmq"
        if layout not in ("rsmq", "cluster"):
            raise ValueError(f"layout must be 'rsmq' or 'cluster', not {layout!r}")
        if on_cluster and layout != "cluster":
            raise ValueError(
                "RSMQ's key layout cannot run on a Redis Cluster: use layout='cluster'"
            )
        self.redis = redis
        self.ns = ns
        self.realtime = realtime
        self.layout: Layout = layout
        self.keys = KeyLayout(ns, cluster=layout == "cluster")
        #: Sends hand their message to a consumer parked on the queue (docs/delivery.md,
        #: "Hand-off"): RSMQ's layout only (a script's PUBLISH cannot count a node's listener
        #: in a Cluster).
        self.handoffs = layout == "rsmq"
        self._owns_client = owns_client
        # qname -> dead-letter queue name last seen; the receive script verifies it, so a stale
        # entry only costs one retry.
        self._dlq_hint: dict[str, str] = {}
        #: qname -> its devices last seen (sorted); the fan-out script verifies it.
        self.device_hint: dict[str, list[str]] = {}
        #: Group membership and the copy step (docs/queue.md, "Groups").
        self.groups = Groups(self)

    @classmethod
    def from_url(
        cls,
        url: str = "redis://localhost:6379/0",
        *,
        ns: str = "rsmq",
        realtime: bool = False,
        layout: Layout | None = None,
        cluster: bool = False,
        connect_timeout: float = 3.0,
        socket_timeout: float = 10.0,
        max_connections: int = 64,
        **redis_kwargs: Any,
    ) -> Queues:
        """Connect lazily to ``url``: every form of :func:`wsmq.connections.redis_from_url`
        (``redis://``, ``rediss://`` (TLS), ``unix://``, ACL user and password from the URL,
        ``redis+sentinel://hosts/service``, ``redis+cluster://hosts`` or ``cluster=True``).

        An unreachable server raises ``redis.exceptions.ConnectionError`` within about
        ``connect_timeout`` seconds per attempt (two quick retries), never hangs.  At most
        ``max_connections`` commands run at once (in total, on a cluster too); more wait (up to
        10 s) for a free connection instead of failing.  ``layout``: see :class:`Queues`.
        """
        kwargs: dict[str, Any] = {
            "decode_responses": True,
            "encoding_errors": "replace",
            "health_check_interval": 15,
        }
        kwargs.update(redis_kwargs)
        client = redis_from_url(
            url,
            cluster=cluster,
            connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            retry=redis_retry(2, cap=0.5),
            max_connections=max_connections,
            **kwargs,
        )
        return cls(client, ns=ns, realtime=realtime, owns_client=True, layout=layout)

    async def close(self) -> None:
        """Close the connection pool (only when this object created the client)."""
        if self._owns_client:
            await self.redis.aclose()

    aclose = close

    async def __aenter__(self) -> Queues:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def realtime_channel(self, qname: str) -> str:
        """The pub/sub channel RSMQ publishes new-message counts on (a sharded channel in the
        cluster layout)."""
        return self.keys.realtime(qname)

    def publish_target(self, qname: str) -> str:
        """The scripts' realtime argument: '' (off) or P/S (PUBLISH/SPUBLISH) + channel."""
        if not self.realtime:
            return ""
        return ("S" if self.keys.cluster else "P") + self.keys.realtime(qname)

    def _qkeys(self, qname: str) -> list[str]:
        return [self.keys.messages(qname), self.keys.attributes(qname)]

    # -- queues -------------------------------------------------------------------------------

    async def create_queue(
        self,
        qname: str,
        vt: int = 30,
        delay: int = 0,
        maxsize: int = 65536,
        *,
        max_receive_count: int | None = None,
        dead_letter_queue: str | None = None,
        message_ttl: int | None = None,
    ) -> None:
        """Create a queue; raises ``QueueExists`` if it exists.

        wsmq extras (stored in ``:Q`` fields RSMQ ignores): ``max_receive_count`` (a message
        received that many times is moved to ``dead_letter_queue``, which must exist, or dropped
        if none is set, instead of being delivered again) and ``message_ttl`` (seconds after
        sending at which a message is dropped instead of delivered).
        """
        qname = v.validate_qname(qname)
        vt = v.validate_vt(30 if vt is None else vt)
        delay = v.validate_delay(0 if delay is None else delay)
        maxsize = v.validate_maxsize(65536 if maxsize is None else maxsize)
        extras = extras_pairs(qname, max_receive_count, dead_letter_queue, message_ttl)
        dlq = dead_letter_of(extras)
        pairs = zip(extras[::2], extras[1::2], strict=True)
        extras = [x for pair in pairs if pair[1] for x in pair]  # "off" = simply not stored
        require_same_slot(self.keys, qname, dlq)
        keys = [self.keys.attributes(qname)]
        if dlq:
            keys.append(self.keys.attributes(dlq))
        await run_script(self.redis, "create", keys, [vt, delay, maxsize, dlq, *extras])
        # Registered after the queue exists and outside any transaction: the registry is in
        # another cluster slot.  A crash in between leaves an unlisted queue, never a listed
        # queue without settings; the next create of the name re-registers it.
        await self.redis.sadd(self.keys.queues(), qname)

    async def delete_queue(self, qname: str) -> None:
        """Delete a queue and all its messages; raises ``QueueNotFound``.  It also leaves every
        group it was a member of, and a group loses its membership."""
        qname = v.validate_qname(qname)
        if isinstance(self.redis, Redis):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.keys.attributes(qname), self.keys.messages(qname))
                pipe.delete(self.keys.parked(qname))
                pipe.srem(self.keys.queues(), qname)
                deleted, _, _ = await pipe.execute()
        else:
            # Cluster: the queue's keys share a slot, the registry does not, so no MULTI
            # across them.  Keys first, registry second (as create, in reverse).
            deleted = await self.redis.delete(
                self.keys.attributes(qname), self.keys.messages(qname)
            )
            await self.redis.srem(self.keys.queues(), qname)
        self._dlq_hint.pop(qname, None)
        await self.groups.forget_queue(qname)
        await self._drop_idle_devices(qname)
        if deleted == 0:
            raise QueueNotFound()

    async def _drop_idle_devices(self, qname: str) -> None:
        """A deleted queue's devices not in use go with it, inboxes and all: else a queue
        created again under the name would fan out to them at once (its plain subscribers
        starving) and hand them the old queue's messages. A device in use keeps its inbox
        until it is released and the retention removes it."""
        with contextlib.suppress(dev.DevicesChanging):  # then the retention removes them
            await dev.fan_out(self, qname, dev.DROP_IDLE, budget=0)

    async def list_queues(self) -> list[str]:
        """Names of all queues in the namespace, sorted."""
        members = await self.redis.smembers(self.keys.queues())
        return sorted(text(m) for m in members)

    async def queue_exists(self, qname: str) -> bool:
        """Whether the queue exists (its ``:Q`` hash has ``vt``, the field RSMQ checks)."""
        qname = v.validate_qname(qname)
        return bool(await self.redis.hexists(self.keys.attributes(qname), "vt"))

    async def get_queue_attributes(self, qname: str) -> QueueAttributes:
        """Settings and counters of a queue (or of a device inbox ``q@d``); raises
        ``QueueNotFound``."""
        qname = v.validate_source(qname)
        return await self._attributes(qname, [])

    async def set_queue_attributes(
        self,
        qname: str,
        *,
        vt: int | None = None,
        delay: int | None = None,
        maxsize: int | None = None,
        max_receive_count: int | None = None,
        dead_letter_queue: str | None = None,
        message_ttl: int | None = None,
    ) -> QueueAttributes:
        """Change settings (``None`` = unchanged) and return the new attributes.

        ``max_receive_count=0``, ``message_ttl=0`` and ``dead_letter_queue=""`` switch the
        extras off.  Raises ``NoAttributeSupplied`` when nothing is given, ``QueueNotFound``.
        """
        given = (vt, delay, maxsize, max_receive_count, dead_letter_queue, message_ttl)
        if all(x is None for x in given):
            raise NoAttributeSupplied()
        qname = v.validate_qname(qname)
        pairs: list[str] = []
        # RSMQ validates in this order: vt, maxsize, delay.
        if vt is not None:
            pairs += ["vt", str(v.validate_vt(vt))]
        if maxsize is not None:
            pairs += ["maxsize", str(v.validate_maxsize(maxsize))]
        if delay is not None:
            pairs += ["delay", str(v.validate_delay(delay))]
        pairs += extras_pairs(qname, max_receive_count, dead_letter_queue, message_ttl)
        self._dlq_hint.pop(qname, None)
        return await self._attributes(qname, pairs)

    async def _attributes(self, qname: str, pairs: list[str]) -> QueueAttributes:
        keys = [self.keys.attributes(qname), self.keys.messages(qname)]
        dlq = dead_letter_of(pairs)
        require_same_slot(self.keys, qname, dlq)
        if dlq:
            keys.append(self.keys.attributes(dlq))
        fields, msgs, hidden = await run_script(self.redis, "attributes", keys, pairs)
        return QueueAttributes.from_reply(fields, msgs, hidden)

    # -- messages -----------------------------------------------------------------------------

    async def send_message(self, qname: str, message: str, delay: int | None = None) -> str:
        """Store a message and return its 32-char id.

        ``delay`` (seconds) defaults to the queue's.  Raises ``QueueNotFound``,
        ``MessageNotString``, ``MessageTooLong`` (length in UTF-16 code units, as RSMQ).
        Idempotent under the client's retries: a retry after a lost reply returns the stored id
        and stores nothing more (see ``SEND_MARKER_TTL``); :meth:`send_messages` too.
        """
        qname = v.validate_qname(qname)
        delay_arg: str | int = "" if delay is None else v.validate_delay(delay)
        body = v.validate_message(message)
        channel = self.publish_target(qname)
        suffix = random_suffix()
        keys = [*self._qkeys(qname), self.keys.send_marker(qname, suffix)]
        args: list[str | bytes | int] = [
            suffix, body, v.utf16_length(message), delay_arg, channel, SEND_MARKER_TTL,
        ]  # fmt: skip
        if self.handoffs:
            # A consumer parked on the queue gets the message in this round trip (send.lua).
            keys.append(self.keys.parked(qname))
            args += [self.keys.handoff_prefix, qname]
        return text(await run_script(self.redis, "send", keys, args))

    async def send_messages(
        self, qname: str, messages: Sequence[str], delay: int | None = None
    ) -> list[str]:
        """Send up to 1000 messages in one round trip (all or none); returns their ids in order.

        One realtime notification is published for the whole batch.  Same errors as
        :meth:`send_message`; ``MessageTooLong`` if any message is too long (none is stored);
        ``InvalidValue`` for more than 1000 messages (one script must not block Redis for long:
        send bigger sets in several batches).
        """
        qname = v.validate_qname(qname)
        if len(messages) > v.MAX_BATCH:
            v.validate_count(len(messages))  # raises InvalidValue with RSMQ's wording
        delay_arg: str | int = "" if delay is None else v.validate_delay(delay)
        args: list[str | bytes | int] = [delay_arg, self.publish_target(qname), SEND_MARKER_TTL]
        suffixes = [random_suffix() for _ in messages]
        for suffix, message in zip(suffixes, messages, strict=True):
            args += [suffix, v.validate_message(message), v.utf16_length(message)]
        if not suffixes:
            return []
        # One marker for the batch (it is all or nothing), named after the first suffix.
        keys = [*self._qkeys(qname), self.keys.send_marker(qname, suffixes[0])]
        reply = await run_script(self.redis, "send_batch", keys, args)
        return [text(i) for i in reply]

    async def receive_message(self, qname: str, vt: int | None = None) -> Message | None:
        """Receive the next visible message and hide it for ``vt`` seconds (queue default if
        ``None``); ``None`` when no message is visible."""
        got = await self._receive(qname, 1, vt, pop=False)
        return got[0] if got else None

    async def receive_messages(
        self, qname: str, count: int, vt: int | None = None
    ) -> list[Message]:
        """Receive up to ``count`` (1..1000) visible messages in one round trip, oldest first."""
        return await self._receive(qname, v.validate_count(count), vt, pop=False)

    async def pop_message(self, qname: str) -> Message | None:
        """Receive and delete the next visible message at once."""
        got = await self._receive(qname, 1, None, pop=True)
        return got[0] if got else None

    async def _receive(self, qname: str, count: int, vt: int | None, pop: bool) -> list[Message]:
        return (await self._receive_reply(qname, count, vt, pop, report_next=False))[0]

    async def _receive_reply(
        self,
        qname: str,
        count: int,
        vt: int | None,
        pop: bool,
        *,
        report_next: bool,
        fan_out_check: bool = False,
        devices_only: bool = False,
        park: str | None = None,
    ) -> tuple[list[Message], float | None]:
        qname = v.validate_source(qname)
        vt_arg: str | int = "" if vt is None else v.validate_vt(vt)
        for _ in range(3):
            dlq = self._dlq_hint.get(qname, "")
            keys = self._qkeys(qname)
            if dlq:
                # Set by another client in a cross-slot way: refuse clearly, not CROSSSLOT.
                require_same_slot(self.keys, qname, dlq)
                keys += [self.keys.messages(dlq), self.keys.attributes(dlq)]
            channel = self.publish_target(dlq) if dlq else ""
            args = [count, vt_arg, "1" if pop else "0", dlq, channel, DROP_BUDGET]
            if report_next:
                args.append("1")
            if fan_out_check:
                keys.append(self.keys.devices(qname))
                args += [len(keys), "1" if devices_only else "0"]
            if park is not None and self.handoffs:
                if not report_next:
                    args.append("0")
                if not fan_out_check:
                    args += ["", ""]
                keys.append(self.keys.parked(qname))
                args += [len(keys), park]
            reply = await run_script(self.redis, "receive", keys, args)
            if int(reply[0]) == 2:
                raise dev.QueueFansOut(f"queue {qname} has devices")
            if int(reply[0]) == 1:  # our dead-letter assumption was stale: retry with its keys
                self._dlq_hint[qname] = text(reply[1])
                continue
            if not report_next:
                return messages_from_reply(reply, 1), None
            nxt = text(reply[1])
            return messages_from_reply(reply, 2), float(nxt) if nxt else None
        raise RuntimeError("dead-letter queue setting kept changing during receive")

    async def delete_message(self, qname: str, id: str) -> bool:
        """Delete a message; ``False`` if it did not exist."""
        return await self.delete_messages(qname, [id]) == 1

    async def delete_messages(self, qname: str, ids: Iterable[str]) -> int:
        """Delete many messages in one round trip; returns how many existed."""
        qname = v.validate_source(qname)
        checked = [v.validate_id(i) for i in ids]
        if not checked:
            return 0
        return int(await run_script(self.redis, "delete", self._qkeys(qname), checked))

    async def change_message_visibility(self, qname: str, id: str, vt: int) -> bool:
        """Make a message visible again in ``vt`` seconds (0 = now); ``False`` if it does not
        exist.  Raises ``QueueNotFound``."""
        return await self.change_messages_visibility(qname, [id], vt) == 1

    async def change_messages_visibility(self, qname: str, ids: Sequence[str], vt: int) -> int:
        """Batch :meth:`change_message_visibility`; returns how many ids existed."""
        qname = v.validate_source(qname)
        checked = [v.validate_id(i) for i in ids]
        vt = v.validate_vt(vt)
        if not checked:
            return 0
        args: list[str | int] = [vt, *checked]
        return int(await run_script(self.redis, "change_visibility", self._qkeys(qname), args))

    # -- helpers for consumers ------------------------------------------------------------------

    async def next_visible_at(self, qname: str) -> float | None:
        """Epoch ms at which the earliest message becomes visible (may be in the past);
        ``None`` for an empty queue."""
        qname = v.validate_source(qname)
        first = await self.redis.zrange(self.keys.messages(qname), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def receive_with_next(
        self,
        qname: str,
        count: int,
        vt: int | None = None,
        *,
        fan_out_check: bool = False,
        devices_only: bool = False,
        park: str | None = None,
    ) -> tuple[list[Message], float | None]:
        """:meth:`receive_messages`, plus when the queue's next message becomes visible.

        The second value is what :meth:`next_visible_at` would answer right after this receive
        (epoch ms, may be in the past; ``None`` for an empty queue), taken in the same round
        trip; it is ``None`` too when all ``count`` messages came back (receive again at once).
        A consumer sets its timer from it without a second round trip.

        ``qname`` may name a device inbox (``q@d``). With ``fan_out_check`` a queue that has
        devices raises :class:`~wsmq.queue.devices.QueueFansOut` and receives nothing (its
        messages are for the inboxes: run :meth:`fan_out`); the plain subscribers' shared inbox
        counts as a device, unless ``devices_only`` (a consumer draining it).

        ``park``: this node's hand-off token (:meth:`unpark`). Receiving fewer than ``count``
        parks the node on the queue for one message: the next send hands it to the node on its
        hand-off channel (docs/delivery.md, "Hand-off"); a full batch unparks it.
        Ignored where :attr:`handoffs` is false.
        """
        return await self._receive_reply(
            qname,
            v.validate_count(count),
            vt,
            False,
            report_next=True,
            fan_out_check=fan_out_check,
            devices_only=devices_only,
            park=park,
        )

    async def unpark(self, qname: str, token: str) -> None:
        """Node ``token`` no longer waits on ``qname``: sends stop handing messages to it."""
        if self.handoffs:
            await self.redis.hdel(self.keys.parked(v.validate_qname(qname)), token)

    async def now_ms(self) -> int:
        """Redis server time in epoch ms (the clock all scores use), for timers that compare
        against :meth:`next_visible_at` without trusting the local clock."""
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def visible_counts(self, qnames: Iterable[str]) -> dict[str, int]:
        """Receivable-now message counts for many queues in one round trip.

        A queue whose messages key is not a sorted set (overwritten by another program) counts
        ``-1``; the others are answered as usual.
        """
        names = [v.validate_source(q) for q in qnames]
        if not names:
            return {}
        if not self.keys.cluster:
            keys = [self.keys.messages(q) for q in names]
            counts = await run_script(self.redis, "visible_counts", keys)
            return {q: int(c) for q, c in zip(names, counts, strict=True)}
        # Cluster layout: one script per slot (a script may not span slots), all concurrently.
        groups = group_by_slot(names, self.keys.messages)
        replies = await asyncio.gather(
            *(
                run_script(self.redis, "visible_counts", [self.keys.messages(q) for q in group])
                for group in groups
            )
        )
        out: dict[str, int] = {}
        for group, counts in zip(groups, replies, strict=True):
            out.update({q: int(c) for q, c in zip(group, counts, strict=True)})
        return {q: out[q] for q in names}

    async def ensure_queue(self, qname: str, **settings: Unpack[QueueSettings]) -> bool:
        """Create the queue unless it exists; ``True`` if it was created."""
        try:
            await self.create_queue(qname, **settings)
        except QueueExists:
            return False
        return True

    # -- device inboxes (wsmq/queue/devices.py, docs/delivery.md "Devices") --------------------

    async def fan_out(
        self, qname: str, retention_ms: int, *, budget: int = dev.FAN_OUT_BUDGET
    ) -> dev.FanOut:
        """Move ``qname``'s visible messages into every device inbox; prune expired devices."""
        return await dev.fan_out(self, qname, retention_ms, budget=budget)

    async def register_device(
        self, qname: str, device: str, holder: str, lease_ms: int, *, max_devices: int = 0
    ) -> bool:
        """Register ``device`` on ``qname`` and take ``holder``'s lease; ``True`` if new.

        ``max_devices`` > 0 caps the queue's devices (``TooManyDevices`` beyond it)."""
        return await dev.register_device(
            self, qname, device, holder, lease_ms, max_devices=max_devices
        )

    async def touch_devices(
        self, qname: str, devices: list[str], holder: str, lease_ms: int
    ) -> None:
        """Renew ``holder``'s leases of ``devices`` of ``qname``."""
        await dev.touch_devices(self, qname, devices, holder, lease_ms)

    async def release_device(self, qname: str, device: str, holder: str) -> None:
        """``holder`` stopped using ``device``: last seen now."""
        await dev.release_device(self, qname, device, holder)

    async def leave_device(
        self, qname: str, device: str, holder: str = "", *, holding: bool = False
    ) -> bool:
        """Remove ``device`` and its inbox now (``DeviceInUse`` while in use)."""
        return await dev.leave_device(self, qname, device, holder, holding=holding)

    async def device_queue_names(self) -> list[str]:
        """Queues that have (or had) devices."""
        return await dev.device_queue_names(self)

    async def forget_device_queue(self, qname: str) -> None:
        """Take ``qname`` off the retention sweep's list."""
        await dev.forget_device_queue(self, qname)

"""Every Redis key and channel name the queue layer uses, in one place.

The default layout is exactly RSMQ's, so the ``rsmq`` npm package reads and writes the same
queues.  The cluster layout (``cluster=True``) wraps the queue name in a hash tag, so a queue's
sorted set, hash and realtime channel share one Redis Cluster slot: ``rsmq:{q}``,
``rsmq:{q}:Q``, ``rsmq:rt:{q}``.  Queue names cannot contain braces, so the default layout
never contains a hash tag.  The registry ``rsmq:QUEUES`` is the same in both.

The one key RSMQ does not have is the short-lived send marker ``rsmq:q:I:<suffix>``
(``rsmq:{q}:I:<suffix>`` in the cluster layout), which makes a retried send idempotent; RSMQ
never reads it and it expires on its own.

The hand-off (docs/delivery.md, "Hand-off") adds ``rsmq:q:parked`` (``rsmq:{q}:parked``), the
nodes waiting for the queue's next message, and one pub/sub channel per node,
``rsmq:wsmq:handoff:<node token>``.

Groups (docs/delivery.md "Groups") add three kinds of keys RSMQ never reads: a group's member
set ``rsmq:g:G`` (``rsmq:{g}:G``), the registry of groups ``rsmq:wsmq:groups``, and the copy
markers ``rsmq:q:C:<id>`` (``rsmq:{q}:C:<id>``) that make copying a group message into member
``q`` idempotent.  A group itself is an ordinary RSMQ queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsmq.protocol.names import split_source

__all__ = ["KeyLayout"]


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names for namespace ``ns`` (prefix ``ns + ":"``): RSMQ's, or hash-tagged for a
    Redis Cluster when ``cluster`` is true."""

    ns: str = "rsmq"
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and ("{" in self.ns or "}" in self.ns):
            # A brace in the prefix would become the hash tag and put every queue in one slot.
            raise ValueError("the namespace must not contain '{' or '}' in the cluster layout")

    def _tag(self, qname: str) -> str:
        return f"{{{qname}}}" if self.cluster else qname

    @property
    def prefix(self) -> str:
        return f"{self.ns}:"

    def queues(self) -> str:
        """Set of all queue names."""
        return f"{self.prefix}QUEUES"

    def messages(self, qname: str) -> str:
        """Sorted set: member = message id, score = epoch ms when visible.

        For a device inbox name ``q@d`` (:func:`wsmq.protocol.names.inbox_name`): the inbox's
        sorted set ``{ns}:{q}:dev:{d}``, in ``q``'s slot in the cluster layout."""
        q, device = split_source(qname)
        if device is not None:
            return f"{self.prefix}{self._tag(q)}:dev:{device}"
        return f"{self.prefix}{self._tag(qname)}"

    def attributes(self, qname: str) -> str:
        """Hash: queue settings, counters and per-message body / ``:rc`` / ``:fr`` (of an
        inbox too: ``{ns}:{q}:dev:{d}:Q``, its settings copied from the queue's)."""
        return f"{self.messages(qname)}:Q"

    def devices(self, qname: str) -> str:
        """Sorted set of the queue's devices: member = device id, score = last seen (epoch
        ms). Non-empty = the queue fans out (docs/delivery.md, Devices)."""
        return f"{self.prefix}{self._tag(qname)}:devices"

    def device_leases(self, qname: str) -> str:
        """Sorted set of the devices in use: member ``<device>/<holder>`` (one per node
        holding a subscription of the device), score = lease expiry (epoch ms)."""
        return f"{self.prefix}{self._tag(qname)}:devices:use"

    def device_queues(self) -> str:
        """Set of the queues that have (or had) devices: what the retention sweep visits.
        ``wsmq:`` cannot be a queue's key (a queue name has no ``:``)."""
        return f"{self.prefix}wsmq:devqueues"

    def send_marker(self, qname: str, suffix: str) -> str:
        """String with a TTL: the id (batch: the base time) stored by the send whose random id
        suffix is ``suffix``, so that a replay of that script call returns it instead of storing
        the message again.  Queue names cannot contain ``:``, so this never names another
        queue's key; in the cluster layout it has the queue's hash tag, hence its slot."""
        return f"{self.prefix}{self._tag(qname)}:I:{suffix}"

    def members(self, group: str) -> str:
        """Set: the member queues of group ``group`` (in the group's slot)."""
        return f"{self.prefix}{self._tag(group)}:G"

    def groups(self) -> str:
        """Set of all group names.  ``:`` cannot be in a queue name, so no queue's keys
        collide with it (the ``wsmq:`` part is where wsmq's own keys live)."""
        return f"{self.prefix}wsmq:groups"

    def copy_marker(self, member: str, msg_id: str) -> str:
        """String with a TTL: group message ``msg_id`` was copied into ``member`` (in the
        member's slot), so a copier redoing the message after a crash does not copy it twice."""
        return f"{self.prefix}{self._tag(member)}:C:{msg_id}"

    def parked(self, qname: str) -> str:
        """Hash of the nodes whose consumer of ``qname`` waits for messages (docs/delivery.md,
        Hand-off): field = node token, value ``<room>:<vt>``. A send hands its message to one of
        them directly. ``:`` cannot be in a queue name, so no queue's keys collide with it."""
        return f"{self.prefix}{self._tag(qname)}:parked"

    @property
    def handoff_prefix(self) -> str:
        """Start of every node's hand-off channel (:meth:`handoff_channel`)."""
        return f"{self.prefix}wsmq:handoff:"

    def handoff_channel(self, token: str) -> str:
        """Pub/sub channel on which node ``token`` takes the messages sends hand to it."""
        return f"{self.handoff_prefix}{token}"

    def realtime(self, qname: str) -> str:
        """Pub/sub channel announcing new messages (payload: queue size); sharded pub/sub
        (``SPUBLISH``/``SSUBSCRIBE``) in the cluster layout."""
        return f"{self.prefix}rt:{self._tag(qname)}"

    def qname_of_channel(self, channel: str) -> str | None:
        """The queue a realtime channel belongs to, or ``None`` if it is not one of ours."""
        head = f"{self.prefix}rt:"
        if not channel.startswith(head):
            return None
        rest = channel[len(head) :]
        if self.cluster:
            if len(rest) < 3 or rest[0] != "{" or rest[-1] != "}":
                return None
            return rest[1:-1]
        return rest or None

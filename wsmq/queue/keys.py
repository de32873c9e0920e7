"""Every Redis key and channel name the queue layer uses, in one place.

The default layout is exactly RSMQ's, so the ``rsmq`` npm package reads and writes the same
queues.  A Redis Cluster layout (hash tags so that a queue's keys share a slot) can be added as
another :class:`KeyLayout` without touching the scripts, which receive every key in ``KEYS``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout"]


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """RSMQ key names for namespace ``ns`` (prefix ``ns + ":"``)."""

    ns: str = "rsmq"

    @property
    def prefix(self) -> str:
        return f"{self.ns}:"

    def queues(self) -> str:
        """Set of all queue names."""
        return f"{self.prefix}QUEUES"

    def messages(self, qname: str) -> str:
        """Sorted set: member = message id, score = epoch ms when visible."""
        return f"{self.prefix}{qname}"

    def attributes(self, qname: str) -> str:
        """Hash: queue settings, counters and per-message body / ``:rc`` / ``:fr``."""
        return f"{self.prefix}{qname}:Q"

    def realtime(self, qname: str) -> str:
        """Pub/sub channel announcing new messages (payload: queue size)."""
        return f"{self.prefix}rt:{qname}"

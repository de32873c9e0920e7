"""redis-py's cluster node free list, made LIFO (a guard for live resharding, not a speed path).

redis-py 8 sends ``ASKING`` and then the redirected command as two separate checkouts from the
target node's free list (``ClusterNode._free``, a FIFO ``deque``): with two or more idle
connections they land on different connections and the command never runs on the node that
was told ``ASKING``. :func:`lifo_free_list` makes a node's free list hand out the connection
last given back, so the command takes the very connection ``ASKING`` was just sent on. Read
against redis-py 8.1.0 and 8.2.0; public path: none (the retries of
:class:`wsmq.redis_pools.BoundedRedisCluster` then ride out more redirects).
"""

from __future__ import annotations

import collections
from typing import Final

from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection

from wsmq._compat import FastPath, register

__all__ = ["CLUSTER_LIFO", "lifo_free_list"]


def _probe() -> bool:
    return "_free" in ClusterNode.__init__.__code__.co_names


CLUSTER_LIFO: Final = register(
    FastPath(
        name="cluster_lifo_free_list",
        library="redis",
        verified=("8.1.", "8.2."),
        touches="ClusterNode._free",
        fallback="redis-py's FIFO free list (ASK redirects may repeat until TTL exhausted)",
        probe=_probe,
        speed=False,
    )
)
_available = CLUSTER_LIFO.version_ok() and CLUSTER_LIFO.probe()


class _StackFreeList(collections.deque[Connection]):
    """A cluster node's free connections, taken from the end they were put back to (LIFO)."""

    def popleft(self) -> Connection:
        return self.pop()


def lifo_free_list(node: ClusterNode | None) -> None:
    """Make ``node``'s free list LIFO (once; nothing when not available)."""
    if not _available or node is None:
        return
    free = getattr(node, "_free", None)
    if isinstance(free, collections.deque) and not isinstance(free, _StackFreeList):
        node._free = _StackFreeList(free, maxlen=free.maxlen)

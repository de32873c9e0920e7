"""Live nodes, announced in Redis: what ``GET /api/nodes`` lists.

Every node with the API on writes ``{ns}:wsmq:node:<id>`` (JSON: id, host, pid, url, version,
started, connections, subscriptions) every ``node_announce_interval`` seconds with a TTL of three
intervals, and keeps its id in the set ``{ns}:wsmq:nodes``. A node that stops deletes its key;
one that dies disappears when its key expires (readers drop ids whose key is gone).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from wsmq import __version__
from wsmq.connections import AnyRedis

from .periodic import Periodic

__all__ = ["NodeAnnouncer", "list_nodes", "new_node_id"]

log = logging.getLogger("wsmq.api")

#: A node's live numbers: ``{"connections": n, "subscriptions": n}``.
NodeStats = Callable[[], dict[str, int]]


def new_node_id() -> str:
    """``<host>-<pid>-<random>``: unique per process, readable in a list."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _registry(ns: str) -> str:
    return f"{ns}:wsmq:nodes"


def _node_key(ns: str, node_id: str) -> str:
    return f"{ns}:wsmq:node:{node_id}"


class NodeAnnouncer:
    """Announce one node until :meth:`stop` (then withdraw it)."""

    def __init__(
        self,
        redis: AnyRedis,
        ns: str,
        stats: NodeStats,
        *,
        interval: float = 5.0,
        url: Callable[[], str | None] | None = None,
        node_id: str | None = None,
    ) -> None:
        self.redis = redis
        self.ns = ns
        self.stats = stats
        self.interval = interval
        self.url = url
        self.node_id = node_id or new_node_id()
        self.started = time.time()
        self._periodic = Periodic("node announcement", interval, self.announce)

    def record(self) -> dict[str, object]:
        now = time.time()
        return {
            "id": self.node_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "url": self.url() if self.url is not None else None,
            "version": __version__,
            "started": round(self.started, 3),
            "announced": round(now, 3),
            **self.stats(),
        }

    async def announce(self) -> None:
        """One announcement (the key and its TTL refreshed)."""
        ttl_ms = max(1000, int(self.interval * 3000))
        await self.redis.set(_node_key(self.ns, self.node_id), json.dumps(self.record()), px=ttl_ms)
        await self.redis.sadd(_registry(self.ns), self.node_id)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        if not self._periodic.running:
            return
        await self._periodic.stop()
        try:
            async with asyncio.timeout(1.0):
                await self.redis.delete(_node_key(self.ns, self.node_id))
                await self.redis.srem(_registry(self.ns), self.node_id)
        except (RedisError, OSError, TimeoutError):
            pass  # the key expires on its own


async def list_nodes(redis: AnyRedis, ns: str) -> list[dict[str, object]]:
    """Every live node's last announcement, with ``uptime`` (seconds), sorted by id."""
    ids = sorted(str(i) for i in await redis.smembers(_registry(ns)))
    raws = await asyncio.gather(*(redis.get(_node_key(ns, i)) for i in ids))
    nodes: list[dict[str, object]] = []
    gone: list[str] = []
    now = time.time()
    for node_id, raw in zip(ids, raws, strict=True):
        if raw is None:
            gone.append(node_id)
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if isinstance(record, dict):
            started = record.get("started")
            if isinstance(started, int | float):
                record["uptime"] = round(max(0.0, now - started), 3)
            nodes.append(record)
    if gone:
        await redis.srem(_registry(ns), *gone)
    return nodes

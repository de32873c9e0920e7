"""The realtime transport of a Redis Cluster: sharded pub/sub, one connection per master.

In the cluster key layout a queue's channel ``{ns}:rt:{{qname}}`` lives in the queue's hash
slot and is published with ``SPUBLISH`` by the master that owns the slot.  This transport
subscribes each channel with ``SSUBSCRIBE`` on that master (one pub/sub connection per master
that owns a subscribed queue) and reads all of them concurrently, so no message waits behind
another node's poll.  Any sign of a topology change (a lost connection, a ``MOVED`` reply, a
``sunsubscribe`` Redis sent on its own after a failover or a slot migration) ends the
connection: the listener reconnects, which re-reads the slot map and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from wsmq.connections import redis_from_url, redis_retry
from wsmq.realtime.transport import ReadLoop, connect_pubsub, log

__all__ = ["ShardedTransport", "cluster_client"]

# Keyword arguments of a cluster node's connections that only make sense inside the cluster
# client (its on-connect hook sends READONLY to replicas) and must not reach a plain client.
_CLUSTER_ONLY = ("redis_connect_func",)

_Failure = RedisError | OSError


def cluster_client(url: str, connect_timeout: float) -> RedisCluster:
    """A cluster client for ``url``, used only to read the slot map."""
    client = redis_from_url(
        url,
        cluster=True,
        role="pubsub",
        retry=1,
        connect_timeout=connect_timeout,
        decode_responses=True,
        encoding_errors="replace",
    )
    assert isinstance(client, RedisCluster)
    return client


@dataclass(eq=False)
class _NodeSub:
    """The pub/sub connection to one master and the channels subscribed on it."""

    name: str
    client: Redis
    pubsub: PubSub
    channels: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


class ShardedTransport:
    """``SSUBSCRIBE`` each channel on the master owning its slot, following slot moves.

    ``cluster`` only serves the slot map; it is closed by :meth:`aclose` when ``owns_cluster``.
    The pub/sub connections are the transport's own, with no read timeout and no retries.
    """

    expected_errors: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(
        self,
        cluster: RedisCluster,
        read_loop: ReadLoop,
        *,
        owns_cluster: bool,
        connect_timeout: float,
    ) -> None:
        self._cluster = cluster
        self._owns_cluster = owns_cluster
        self._read_loop = read_loop
        self._connect_timeout = connect_timeout
        self._initialized = False
        self._subs: dict[str, _NodeSub] = {}
        # Serialises opening node connections, so two subscribes never open one node twice.
        self._open_lock = asyncio.Lock()
        # Set (to the cause) by whichever node reader or subscribe fails first.
        self._failed: asyncio.Future[_Failure] | None = None

    async def open(self) -> None:
        self._failed = asyncio.get_running_loop().create_future()
        # Re-read the slot map on every reconnect: after a failover or a migration the
        # channels belong to other masters.
        if not self._initialized:
            await self._cluster.initialize()
            self._initialized = True
        else:
            await self._cluster.nodes_manager.initialize()

    async def subscribe_all(self, channels: list[str]) -> None:
        for channel in channels:
            await self._subscribe_channel(channel)

    async def run(self) -> None:
        failed = self._failed
        assert failed is not None, "run() before open()"
        raise await failed

    async def subscribe(self, channel: str) -> None:
        if self._failed is not None and not self._failed.done():
            try:
                await self._subscribe_channel(channel)
            except (RedisError, OSError) as exc:
                self._fail(exc)

    async def unsubscribe(self, channel: str) -> None:
        for sub in list(self._subs.values()):
            if channel in sub.channels:
                sub.channels.discard(channel)
                with contextlib.suppress(RedisError, OSError):
                    async with sub.lock:
                        await sub.pubsub.sunsubscribe(channel)

    async def disconnect(self) -> None:
        self._failed = None
        subs, self._subs = list(self._subs.values()), {}
        current = asyncio.current_task()
        for sub in subs:
            if sub.task is not None and sub.task is not current:
                sub.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sub.task
            with contextlib.suppress(Exception):
                await sub.pubsub.aclose()
            with contextlib.suppress(Exception):
                await sub.client.aclose()

    async def aclose(self) -> None:
        await self.disconnect()
        if self._owns_cluster:
            await self._cluster.aclose()

    def _fail(self, exc: _Failure) -> None:
        failed = self._failed
        if failed is not None and not failed.done():
            failed.set_result(exc)

    async def _subscribe_channel(self, channel: str) -> None:
        node = self._cluster.get_node_from_key(channel)
        if node is None:
            raise RedisConnectionError(f"no master serves the slot of {channel!r}")
        async with self._open_lock:
            sub = self._subs.get(node.name)
            if sub is None:
                sub = await self._open_node(node)
        sub.channels.add(channel)
        # One channel per SSUBSCRIBE: channels of different slots in one call are CROSSSLOT.
        async with sub.lock:
            await sub.pubsub.ssubscribe(channel)

    async def _open_node(self, node: ClusterNode) -> _NodeSub:
        kwargs = {k: v for k, v in node.connection_kwargs.items() if k not in _CLUSTER_ONLY}
        kwargs.update(
            socket_timeout=None,
            socket_connect_timeout=self._connect_timeout,
            retry=redis_retry(0),
            health_check_interval=0,
            decode_responses=True,
            encoding_errors="replace",
        )
        client = Redis.from_pool(ConnectionPool(connection_class=node.connection_class, **kwargs))
        pubsub = client.pubsub()
        sub = _NodeSub(node.name, client, pubsub)
        self._subs[node.name] = sub
        await connect_pubsub(pubsub)
        sub.task = asyncio.create_task(self._read_node(sub), name=f"wsmq-realtime-{node.name}")
        return sub

    async def _read_node(self, sub: _NodeSub) -> None:
        try:
            await self._read_loop(sub.pubsub, sub.lock, sub.name, sub.channels)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave the listener waiting forever
            log.exception(
                "realtime listener: reader for %s failed",
                sub.name,
                extra={"event": "realtime.reader_failed", "node": sub.name},
            )
            self._fail(RedisConnectionError(f"reader for {sub.name} failed: {exc!r}"))

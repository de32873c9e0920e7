"""Realtime notifications on a Redis Cluster: sharded pub/sub, one connection per master.

In the cluster key layout a queue's channel ``{ns}:rt:{{qname}}`` lives in the queue's hash
slot and is published with ``SPUBLISH`` by the master that owns the slot.  This listener
subscribes each channel with ``SSUBSCRIBE`` on that master (one pub/sub connection per master
that owns a subscribed queue) and reads all of them concurrently, so no message waits behind
another node's poll.  Any sign of a topology change (a lost connection, a ``MOVED`` reply, a
``sunsubscribe`` Redis sent on its own after a failover or a slot migration) tears everything
down, re-reads the slot map and subscribes again; every queue is then reported once, exactly as
:class:`~wsmq.realtime.listener.RealtimeListener` does after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from wsmq.connections import redis_from_url
from wsmq.realtime.listener import Callback, RealtimeListener
from wsmq.realtime.pubsub_reader import PubSubReader

__all__ = ["ClusterRealtimeListener"]

log = logging.getLogger(__name__)

# Keyword arguments of a cluster node's connections that only make sense inside the cluster
# client (its on-connect hook sends READONLY to replicas) and must not reach a plain client.
_CLUSTER_ONLY = ("redis_connect_func",)


class _TopologyChanged(RedisError):
    """Redis unsubscribed us on its own: the channel's slot moved to another node."""


@dataclass(eq=False)
class _NodeSub:
    """The pub/sub connection to one master and the channels subscribed on it."""

    name: str
    client: Redis
    pubsub: PubSub
    channels: set[str] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    task: asyncio.Task[None] | None = None


class ClusterRealtimeListener(RealtimeListener):
    """:class:`RealtimeListener` for the cluster layout on a Redis Cluster (``SSUBSCRIBE``).

    Built automatically by ``RealtimeListener(url_or_client, ns)`` when given a
    ``redis+cluster://`` URL or a ``RedisCluster`` client; same API and guarantees.  A client
    passed in is only used to read the slot map (it is not closed); the pub/sub connections are
    the listener's own, with no read timeout and no automatic retries.
    """

    def __init__(
        self,
        redis: str | RedisCluster,
        ns: str = "rsmq",
        *,
        layout: str | None = "cluster",
        callback: Callback | None = None,
        backoff_min: float = 0.1,
        backoff_max: float = 5.0,
        ping_interval: float = 10.0,
        connect_timeout: float = 3.0,
        confirm_timeout: float = 5.0,
    ) -> None:
        if layout not in (None, "cluster"):
            raise ValueError("a Redis Cluster only supports the cluster key layout")
        self._setup(
            ns,
            cluster=True,
            callback=callback,
            backoff_min=backoff_min,
            backoff_max=backoff_max,
            ping_interval=ping_interval,
            confirm_timeout=confirm_timeout,
        )
        self._owns_cluster = isinstance(redis, str)
        if isinstance(redis, str):
            client = redis_from_url(
                redis,
                cluster=True,
                role="pubsub",
                retry=1,
                connect_timeout=connect_timeout,
                decode_responses=True,
                encoding_errors="replace",
            )
            assert isinstance(client, RedisCluster)
            self._cluster: RedisCluster = client
        else:
            self._cluster = redis
        self._connect_timeout = connect_timeout
        self._subs: dict[str, _NodeSub] = {}
        # Serialises opening node connections, so two subscribes never open one node twice.
        self._open_lock = asyncio.Lock()
        self._failed: asyncio.Future[RedisError | OSError] | None = None

    # -- how a (un)subscribe goes on the wire: one sharded subscription per master ----------

    async def _send_subscribe(self, channel: str) -> None:
        if self._failed is not None and not self._failed.done():
            try:
                await self._subscribe_channel(channel)
            except (RedisError, OSError) as exc:
                self._fail(exc)

    async def _send_unsubscribe(self, channel: str) -> None:
        for sub in list(self._subs.values()):
            if channel in sub.channels:
                sub.channels.discard(channel)
                with contextlib.suppress(RedisError, OSError):
                    async with sub.lock:
                        await sub.pubsub.sunsubscribe(channel)

    async def aclose(self) -> None:
        """Stop the readers, close every connection; iteration ends."""
        await self._stop_reader()
        await self._close_subs()
        if self._owns_cluster:
            await self._cluster.aclose()

    close = aclose

    # -- supervisor ------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.backoff_min
        first = True
        failing = False
        while not self._closed:
            self._failed = asyncio.get_running_loop().create_future()
            try:
                # Re-read the slot map on every (re)connect: after a failover or a migration
                # the channels belong to other masters.
                if first:
                    await self._cluster.initialize()
                else:
                    await self._cluster.nodes_manager.initialize()
                channels = [self.channel(q) for q in self._queues]
                self._report_on_ack = set(channels)
                for channel in channels:
                    await self._subscribe_channel(channel)
                self.connections += 1
                self.connected.set()
                if failing:
                    log.info("realtime listener (cluster): subscribed again after an outage")
                failing = first = False
                delay = self.backoff_min
                raise await self._failed
            except (RedisError, OSError) as exc:
                # Once per outage at warning level, then quietly until it is over.
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "realtime listener (cluster): %s; reconnecting", exc)
                failing = True
            finally:
                self.connected.clear()
                self._fail_confirms()
                await self._close_subs()
            if self._closed:
                return
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)

    def _fail(self, exc: RedisError | OSError) -> None:
        failed = self._failed
        if failed is not None and not failed.done():
            failed.set_result(exc)

    async def _close_subs(self) -> None:
        subs, self._subs = list(self._subs.values()), {}
        current = asyncio.current_task()
        for sub in subs:
            if sub.task is not None and sub.task is not current:
                sub.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sub.task
            with contextlib.suppress(Exception):
                await sub.pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            with contextlib.suppress(Exception):
                await sub.client.aclose()

    async def _subscribe_channel(self, channel: str) -> None:
        node = self._cluster.get_node_from_key(channel)
        if node is None:
            raise RedisConnectionError(f"no master serves the slot of {channel!r}")
        async with self._open_lock:
            sub = self._subs.get(node.name)
            if sub is None:
                sub = await self._open(node)
        sub.channels.add(channel)
        # One channel per SSUBSCRIBE: channels of different slots in one call are CROSSSLOT.
        async with sub.lock:
            await sub.pubsub.ssubscribe(channel)

    async def _open(self, node: ClusterNode) -> _NodeSub:
        kwargs: dict[str, Any] = {
            k: v for k, v in node.connection_kwargs.items() if k not in _CLUSTER_ONLY
        }
        kwargs.update(
            socket_timeout=None,
            socket_connect_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            decode_responses=True,
            encoding_errors="replace",
        )
        pool = ConnectionPool(connection_class=node.connection_class, **kwargs)
        client = Redis.from_pool(pool)
        pubsub = client.pubsub()
        sub = _NodeSub(node.name, client, pubsub)
        self._subs[node.name] = sub
        await pubsub.connect()  # type: ignore[no-untyped-call]
        sub.task = asyncio.create_task(self._read_node(sub), name=f"wsmq-realtime-{node.name}")
        return sub

    # -- one reader per master -------------------------------------------------------------------

    async def _read_node(self, sub: _NodeSub) -> None:
        try:
            await self._read_loop(sub)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave the supervisor waiting forever
            log.exception("realtime listener (cluster): reader for %s failed", sub.name)
            self._fail(RedisConnectionError(f"reader for {sub.name} failed: {exc!r}"))

    async def _read_loop(self, sub: _NodeSub) -> None:
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        ping_sent: float | None = None
        reader = PubSubReader(sub.pubsub)
        while True:
            replies = await reader.read(1.0)
            now = loop.time()
            if not replies:
                if ping_sent is not None and now - ping_sent > self.ping_interval:
                    raise RedisConnectionError(f"no PONG from {sub.name}")
                if ping_sent is None and now - last_ping >= self.ping_interval:
                    async with sub.lock:
                        await sub.pubsub.ping()
                    ping_sent = last_ping = now
                continue
            # Any reply proves the link is alive. Not only "pong": with decode_responses=True
            # redis-py 8.1 splits a subscribed-mode PONG into {'type': 'P', 'channel': 'O'}.
            ping_sent = None
            notified: set[str] = set()  # one wake-up per queue for what one read brought
            for kind, channel in replies:
                if channel is None:
                    continue
                if kind == "ssubscribe":
                    confirmed_to_caller = self._confirm(channel)
                    if channel in self._report_on_ack:
                        self._report_on_ack.discard(channel)
                        if not confirmed_to_caller:
                            await self._notify(channel)
                elif kind == "sunsubscribe":
                    if channel in sub.channels:  # not asked for: the slot moved away
                        raise _TopologyChanged(f"{sub.name} dropped {channel} (slot moved)")
                elif kind == "smessage" and channel not in notified:
                    notified.add(channel)
                    await self._notify(channel)

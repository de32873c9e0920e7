"""The realtime transport of one server or a Sentinel master: one pub/sub connection.

Channels are subscribed with ``SUBSCRIBE`` (RSMQ's layout) or, with ``layout="cluster"`` on a
single server, ``SSUBSCRIBE`` (the cluster layout's channels are sharded).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import SentinelConnectionPool

from wsmq.connections import redis_from_url, redis_retry
from wsmq.realtime.transport import LOST, ReadLoop, connect_pubsub

__all__ = ["PubSubTransport", "listener_client"]


def listener_client(redis: str | Redis, connect_timeout: float) -> Redis:
    """A dedicated client for ``redis``: no read timeout, no retries, no health checks.

    An idle subscription must not time out, and the listener reconnects and PINGs itself.  A
    Sentinel client gives a new pool on the same sentinels, so reconnects follow failovers.
    """
    overrides: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": connect_timeout,
        "retry": redis_retry(0),
        "health_check_interval": 0,
        "decode_responses": True,
        "encoding_errors": "replace",
    }
    if isinstance(redis, str):
        client = redis_from_url(redis, role="pubsub", **overrides)
        assert isinstance(client, Redis)
        return client
    source = redis.connection_pool
    if isinstance(source, SentinelConnectionPool):
        kwargs = {
            k: v
            for k, v in source.connection_kwargs.items()
            if k not in ("connection_pool", "connection_class", "retry_on_error")
        }
        sentinel_client: Redis = source.sentinel_manager.master_for(
            source.service_name, **{**kwargs, **overrides}
        )
        return sentinel_client
    kwargs = {**source.connection_kwargs, **overrides}
    kwargs.pop("retry_on_error", None)
    return Redis(connection_pool=ConnectionPool(connection_class=source.connection_class, **kwargs))


class PubSubTransport:
    """``SUBSCRIBE`` (or ``SSUBSCRIBE`` when ``sharded``) on one connection of ``client``.

    :meth:`subscribe` calls made while a ``SUBSCRIBE`` is being written join the next one: in a
    reconnect storm thousands of queues are subscribed within a second, and one command per
    channel cost the node ~37 µs of CPU each against ~2.6 µs in commands of 50 (redis-py packs,
    locks and writes every command on its own).
    """

    expected_errors = LOST

    #: Most channels in one ``SUBSCRIBE``.
    BATCH = 1000

    def __init__(self, client: Redis, read_loop: ReadLoop, *, sharded: bool) -> None:
        self.client = client
        self._read_loop = read_loop
        self._sharded = sharded
        self._pubsub: PubSub | None = None
        self._write_lock = asyncio.Lock()
        # Channels waiting for the next SUBSCRIBE, and the task writing them.
        self._batch: list[str] = []
        self._flusher: asyncio.Task[None] | None = None

    async def open(self) -> None:
        pubsub = self.client.pubsub()
        try:
            await connect_pubsub(pubsub)
        except BaseException:
            await _close(pubsub)
            raise
        # Only a connected pubsub is shared with subscribe(): it must not connect on its own.
        self._pubsub = pubsub

    async def subscribe_all(self, channels: list[str]) -> None:
        pubsub = self._pubsub
        if channels and pubsub is not None:
            async with self._write_lock:
                await self._subscribe(pubsub, channels)

    async def run(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None, "run() before open()"
        await self._read_loop(pubsub, self._write_lock, "Redis", None)

    async def subscribe(self, channel: str) -> None:
        """Subscribe ``channel`` with the next ``SUBSCRIBE`` (the confirmation is read by the
        read loop); a no-op while disconnected (``subscribe_all`` runs on reconnect)."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        self._batch.append(channel)
        if self._flusher is None:
            # A task of its own: a caller cancelled meanwhile must not drop the others' channels.
            self._flusher = asyncio.get_running_loop().create_task(self._flush(pubsub))

    async def _flush(self, pubsub: PubSub) -> None:
        try:
            while self._batch and self._pubsub is pubsub:
                channels = self._batch[: self.BATCH]
                del self._batch[: self.BATCH]
                with contextlib.suppress(*LOST):
                    async with self._write_lock:
                        if self._pubsub is pubsub:
                            await self._subscribe(pubsub, channels)
        finally:
            self._flusher = None
            if self._pubsub is not pubsub:
                self._batch.clear()  # a reconnect subscribes every channel anyway

    async def unsubscribe(self, channel: str) -> None:
        if channel in self._batch:  # not written yet: it must not be subscribed after this
            self._batch.remove(channel)
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(*LOST):
                async with self._write_lock:
                    if self._sharded:
                        await pubsub.sunsubscribe(channel)
                    else:
                        await pubsub.unsubscribe(channel)

    async def disconnect(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._batch.clear()  # the reconnect's subscribe_all has them all
        flusher = self._flusher
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if pubsub is not None:
            await _close(pubsub)

    async def aclose(self) -> None:
        await self.disconnect()
        await self.client.aclose()

    async def _subscribe(self, pubsub: PubSub, channels: list[str]) -> None:
        if self._sharded:
            await pubsub.ssubscribe(*channels)
        else:
            await pubsub.subscribe(*channels)


async def _close(pubsub: PubSub) -> None:
    """Close ``pubsub``; closing a dead connection may fail, and that is nothing to report."""
    with contextlib.suppress(Exception):
        await pubsub.aclose()

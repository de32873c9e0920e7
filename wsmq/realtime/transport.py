"""What a realtime transport is: how the listener's channels reach Redis.

:class:`~wsmq.realtime.listener.RealtimeListener` owns the queues, the callbacks, the reconnect
loop and the read loop; a transport owns the connections: it (un)subscribes channels on the
wire and runs the listener's read loop on each connection until its link is lost.  Two exist:
:class:`~wsmq.realtime.pubsub.PubSubTransport` (``SUBSCRIBE`` on one server or a Sentinel
master) and :class:`~wsmq.realtime.sharded.ShardedTransport` (``SSUBSCRIBE`` per Cluster master).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsmq.errors import WsmqError

__all__ = [
    "LOST",
    "ReadLoop",
    "TopologyChanged",
    "Transport",
    "connect_pubsub",
    "log",
]

#: The one logger of the realtime package.
log = logging.getLogger("wsmq.realtime")

#: Errors that mean "the link is gone": reconnect quietly.
LOST: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

#: The listener's read loop for one connected ``PubSub``: ``(pubsub, write_lock, peer, owned)``;
#: it returns only by raising when the link is lost.  ``owned``: channels whose unrequested
#: ``sunsubscribe`` means their slot moved (sharded transport), ``None`` otherwise.
ReadLoop = Callable[[PubSub, asyncio.Lock, str, "set[str] | None"], Awaitable[None]]


class TopologyChanged(WsmqError, RedisError, code="topology_changed"):
    """Redis unsubscribed us on its own: the channel's slot moved to another node."""


class Transport(Protocol):
    """How the listener's channels reach Redis; the listener drives one connection at a time.

    ``open`` then ``subscribe_all`` make a connection, ``run`` returns or raises when it is
    lost, ``disconnect`` ends it (always called, also after a failed ``open``).
    """

    #: Errors of an attempt that are part of normal operation (logged as an outage warning).
    expected_errors: tuple[type[Exception], ...]

    async def open(self) -> None:
        """Connect, with no channel subscribed yet."""

    async def subscribe_all(self, channels: list[str]) -> None:
        """Subscribe ``channels`` on the connection just opened."""

    async def run(self) -> None:
        """Read with the listener's read loop until the connection is lost (raises why)."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe one channel now if connected (best effort: a loss is seen by ``run``)."""

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe one channel if connected (best effort)."""

    async def disconnect(self) -> None:
        """Close the current connection(s); the transport can ``open`` again."""

    async def aclose(self) -> None:
        """Release everything for good."""


async def connect_pubsub(pubsub: PubSub) -> None:
    """Open ``pubsub``'s connection now, so a failure shows here rather than on first use."""
    connect: Callable[[], Awaitable[None]] = pubsub.connect  # typed here: untyped in redis-py
    await connect()

"""What a realtime transport is, and the read loop both transports share.

:class:`~wsmq.realtime.listener.RealtimeListener` owns the queues, the callbacks and the
reconnect loop; a transport only knows how channels are (un)subscribed on the wire and reads
replies until its link is lost.  Two exist: :class:`~wsmq.realtime.pubsub.PubSubTransport`
(``SUBSCRIBE`` on one server or a Sentinel master) and
:class:`~wsmq.realtime.sharded.ShardedTransport` (``SSUBSCRIBE`` per Cluster master).
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

from wsmq.realtime.pubsub_reader import PubSubReader, Reply

__all__ = [
    "LOST",
    "Dispatch",
    "TopologyChanged",
    "Transport",
    "connect_pubsub",
    "log",
    "read_until_lost",
]

#: The one logger of the realtime package.
log = logging.getLogger("wsmq.realtime")

#: Errors that mean "the link is gone": reconnect quietly.
LOST: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)

#: The listener's handler for one read's replies.  ``owned``: channels whose unrequested
#: ``sunsubscribe`` means their slot moved (sharded transport), ``None`` otherwise.
Dispatch = Callable[[list[Reply], "set[str] | None"], Awaitable[None]]


class TopologyChanged(RedisError):
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
        """Read replies into the dispatcher until the connection is lost (raises why)."""

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
    await pubsub.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py


async def read_until_lost(
    pubsub: PubSub,
    write_lock: asyncio.Lock,
    ping_interval: float,
    peer: str,
    dispatch: Dispatch,
    owned: set[str] | None = None,
) -> None:
    """Read ``pubsub`` forever, PINGing when idle so a silently dead peer is noticed.

    Raises a redis-py ``ConnectionError`` when no PONG comes within ``ping_interval``.
    """
    loop = asyncio.get_running_loop()
    last_ping = loop.time()
    ping_sent: float | None = None
    reader = PubSubReader(pubsub)
    while True:
        replies = await reader.read(1.0)
        if not replies:
            now = loop.time()
            if ping_sent is not None and now - ping_sent > ping_interval:
                raise RedisConnectionError(f"no PONG from {peer}")
            if ping_sent is None and now - last_ping >= ping_interval:
                async with write_lock:
                    await pubsub.ping()
                ping_sent = last_ping = now
            continue
        # Any reply proves the link is alive. Not only "pong": with decode_responses=True
        # redis-py splits a subscribed-mode PONG into {'type': 'P', 'channel': 'O'}.
        ping_sent = None
        await dispatch(replies, owned)

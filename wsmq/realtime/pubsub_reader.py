"""Read pub/sub replies in bulk, straight from a connection's hiredis reader.

Every send publishes a notification, so under load a node's listener reads one reply per
message sent to its queues. Through ``PubSub.get_message`` each costs a stack of redis-py
layers (a retry wrapper, two timeout contexts, the push-notification handler, which formats a
debug string for every message) — about half of a node's CPU in the benchmark's throughput
scenario. :class:`PubSubReader` takes every reply the socket already brought with
``hiredis.Reader.gets()`` in a plain loop and awaits the socket only when that buffer is
empty, under one timeout per read instead of per reply.

Unsubscribe confirmations (rare) still go through ``PubSub.handle_message``, which keeps
redis-py's own channel bookkeeping: without it ``PubSub.channels`` would keep every channel
ever unsubscribed on the connection.

The parser is reached through :mod:`wsmq._compat.redis_pubsub` (fast path
``hiredis_pubsub``). When it is not available (no hiredis, another redis-py, fast paths off)
the reader falls back to ``get_message``, one reply per call; ``tests/queue/test_pubsub_reader.py``
fails if the installed redis-py stops taking the fast path, so an upgrade cannot silently
slow delivery down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from wsmq._compat.redis_pubsub import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
from wsmq._compat.redis_pubsub import hiredis_replies

__all__ = ["PubSubReader", "Reply"]

#: Replies whose bookkeeping redis-py does in ``PubSub.handle_message``.
_UNSUBSCRIBE_KINDS = frozenset({"unsubscribe", "sunsubscribe", "punsubscribe"})

#: ``(kind, channel, data)``: kind is ``"message"``, ``"smessage"``, ``"subscribe"``, ...
#: (lower case); channel is ``None`` for replies without one (a PONG); data is the payload of a
#: message (the count of a subscribe confirmation, ``None`` when absent).
Reply = tuple[str, str | None, object]


class PubSubReader:
    """Reads the replies of one connected ``PubSub`` (``decode_responses=True``)."""

    __slots__ = ("_fill", "_gets", "_pubsub")

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        direct = hiredis_replies(pubsub)
        self._gets = None if direct is None else direct.gets
        self._fill = None if direct is None else direct.read_from_socket

    @property
    def fast(self) -> bool:
        """Whether replies are taken from the hiredis reader in bulk."""
        return self._gets is not None

    async def read(self, wait_s: float) -> list[Reply]:
        """Every reply available now, else those that arrive within ``wait_s`` seconds.

        Returns ``[]`` when nothing came in time. Raises a redis-py ``ConnectionError`` when the
        server closed the connection, and an error reply (e.g. ``ResponseError``) as itself.
        """
        if self._gets is None or self._fill is None:
            msg = await self._pubsub.get_message(timeout=wait_s)
            if msg is None:
                return []
            channel = msg.get("channel")
            return [
                (
                    str(msg.get("type")),
                    channel if isinstance(channel, str) else None,
                    msg.get("data"),
                )
            ]
        replies, unsubscribed = self._drain()
        if not replies:
            try:
                async with asyncio.timeout(wait_s):
                    await self._fill()  # feeds the reader; raises on EOF
            except TimeoutError:
                return []
            replies, unsubscribed = self._drain()
        if unsubscribed:
            # Typed here: untyped in redis-py.
            handle: Callable[[list[object]], Awaitable[object]] = self._pubsub.handle_message
            for raw in unsubscribed:
                await handle(raw)
        return replies

    def _drain(self) -> tuple[list[Reply], list[list[object]]]:
        out: list[Reply] = []
        unsubscribed: list[list[object]] = []
        gets = self._gets
        assert gets is not None
        while True:
            reply = gets()
            if reply is _NOT_ENOUGH_DATA:
                return out, unsubscribed
            if isinstance(reply, list):  # RESP2 arrays and RESP3 push notifications alike
                kind = reply[0] if reply else ""
                kind = kind.lower() if isinstance(kind, str) else str(kind)
                n = len(reply)
                channel = reply[1] if n > 1 else None
                out.append(
                    (
                        kind,
                        channel if isinstance(channel, str) else None,
                        reply[2] if n > 2 else None,
                    )
                )
                if kind in _UNSUBSCRIBE_KINDS:
                    unsubscribed.append(reply)
            elif isinstance(reply, RedisConnectionError):
                raise reply
            elif isinstance(reply, Exception):
                raise reply  # an error reply (e.g. NOAUTH): the caller reconnects
            else:  # a plain reply in subscribed mode: RESP3's PONG
                out.append((str(reply).lower(), None, None))

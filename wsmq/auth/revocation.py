"""Cluster-wide revocation: one Redis pub/sub channel tells every node to drop a user's sockets.

Messages on ``{ns}:wsmq:revoke`` are JSON ``{"userId": "..."}`` (never pickle: pub/sub is not
authenticated). Publishing is fire-and-forget; the store change (cleared access token, disabled
flag) is what makes the revocation durable, the event only makes it immediate.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsmq.backoff import Backoff
from wsmq.connections import AnyRedis, broadcast_pubsub_client, redis_from_url
from wsmq.logs import OutageLog

log = logging.getLogger("wsmq.auth")


def revocation_channel(ns: str) -> str:
    """The pub/sub channel name for namespace ``ns``."""
    return f"{ns}:wsmq:revoke"


def encode_revocation(user_id: str) -> str:
    """The JSON message for one revoked user."""
    return json.dumps({"userId": user_id}, separators=(",", ":"))


def decode_revocation(data: bytes | str) -> str | None:
    """The user id of a revocation message, or None for anything malformed."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    user_id = body.get("userId") if isinstance(body, dict) else None
    return user_id if isinstance(user_id, str) and user_id else None


class RevocationBus:
    """Publish and receive user revocations over Redis.

    Args:
        redis_url: the Redis every node shares.
        ns: key namespace (the RSMQ ``ns``, default ``rsmq``).
        max_backoff: longest pause between reconnect attempts of :meth:`revocations`.
    """

    def __init__(self, redis_url: str, ns: str = "rsmq", *, max_backoff: float = 5.0) -> None:
        self.redis_url = redis_url
        self.ns = ns
        self.channel = revocation_channel(ns)
        self.max_backoff = max_backoff
        self._publisher: AnyRedis | None = None

    async def revoke(self, user_id: str) -> int:
        """Announce that ``user_id``'s sessions must end; returns how many nodes heard it."""
        if self._publisher is None:
            # Any URL form; on a cluster, classic PUBLISH reaches every node.
            self._publisher = redis_from_url(self.redis_url, socket_timeout=5, retry=1)
        receivers = await self._publisher.publish(self.channel, encode_revocation(user_id))
        return int(receivers)

    async def revocations(
        self, on_reconnect: Callable[[], Awaitable[None] | None] | None = None
    ) -> AsyncIterator[str]:
        """Yield revoked user ids forever, on a dedicated connection, reconnecting on loss.

        Events published while disconnected are lost; ``on_reconnect`` (if given) runs after each
        subscription, the first included (sockets may have been admitted before it, for instance
        while Redis was down when the node started), so the caller can re-check its users
        against the store.
        """
        backoff = Backoff(base=0.05, cap=self.max_backoff)
        outage = OutageLog(log, "revocation channel")
        while True:
            client: aioredis.Redis | None = None
            pubsub: PubSub | None = None
            # A refusal (not a lost link) is retried no faster than once a second.
            refused = False
            try:
                # A plain pub/sub client (one cluster node on a cluster: classic pub/sub is
                # cluster-wide), with no read timeout.
                client = await broadcast_pubsub_client(self.redis_url, retry=0)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.channel)
                if on_reconnect is not None:
                    result = on_reconnect()
                    if result is not None:
                        await result
                backoff.reset()
                outage.recovered()
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None or msg.get("type") != "message":
                        continue
                    user_id = decode_revocation(msg["data"])
                    if user_id is None:
                        log.warning(
                            "ignored a malformed revocation message",
                            extra={"event": "revocation.malformed"},
                        )
                        continue
                    yield user_id
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                outage.failed(f"lost ({type(exc).__name__})")
            except RedisError as exc:
                # e.g. an ACL without SUBSCRIBE rights: never end the iterator silently (the node
                # would stop closing revoked users' sockets); say why and keep retrying.
                outage.failed(f"failed ({type(exc).__name__}: {exc})", level=logging.ERROR)
                refused = True
            finally:
                try:
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not None:
                        await client.aclose()
                except Exception:  # closing a dead connection may fail: nothing to do
                    log.debug(
                        "error closing the revocation connection",
                        exc_info=True,
                        extra={"event": "revocation.close_failed"},
                    )
            delay = backoff.next()
            await asyncio.sleep(max(delay, 1.0) if refused else delay)

    async def aclose(self) -> None:
        """Close the publishing connection."""
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.aclose()

    close = aclose

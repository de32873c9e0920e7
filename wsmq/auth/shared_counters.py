"""Rate counters every node shares through Redis, counting locally while Redis is unreachable.

Keys are ``{ns}:ratelimit:<kind>:<digest>``: the counted value (a user name, an address) only
as a keyed BLAKE2b digest, never in clear. One key per Lua call, so any deployment works,
Redis Cluster included. Each key expires once its backlog has drained.

When Redis fails (down, slow beyond ``timeout``, pool exhausted) the limiter fails **open**
onto per-node in-memory counters: logins keep working, limited per node, and Redis is tried
again after ``retry_interval``. One warning per outage, one info line when it is back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from redis.exceptions import NoScriptError, RedisError

from wsmq.auth.ratelimit import GCRA_LUA, LocalCounters, Mode, Step
from wsmq.connections import AnyRedis, redis_from_url

log = logging.getLogger("wsmq.auth")

_GCRA_SHA = hashlib.sha1(GCRA_LUA.encode(), usedforsecurity=False).hexdigest()


def counter_key(ns: str, kind: str, value: str, salt: bytes) -> str:
    """The Redis key counting ``value`` (a user name, an address) of ``kind``."""
    digest = hashlib.blake2b(value.encode(), key=salt[:64], digest_size=16).hexdigest()
    return f"{ns}:ratelimit:{kind}:{digest}"


class SharedCounters:
    """GCRA counters (see :mod:`wsmq.auth.ratelimit`) in Redis, or in memory when it fails.

    Args:
        redis_url: the Redis every node shares (any form :func:`redis_from_url` takes); None
            counts in memory only (one process).
        timeout: longest a counter call may wait for Redis before counting locally.
        retry_interval: seconds to count locally after a failure before trying Redis again.
        clock: monotonic seconds (for ``retry_interval``).
    """

    def __init__(
        self,
        redis_url: str | None,
        *,
        timeout: float = 0.5,
        retry_interval: float = 5.0,
        local: LocalCounters | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis_url = redis_url
        self.timeout = timeout
        self.retry_interval = retry_interval
        self.local = local or LocalCounters()
        self.clock = clock
        self._redis: AnyRedis | None = None
        self._down_until: float | None = None  # counting locally until then, after a failure
        self._outage = False  # a warning was logged; an info line follows once Redis answers

    @property
    def shared(self) -> bool:
        """Whether counts currently go to Redis."""
        return self.redis_url is not None and self._down_until is None

    def _client(self) -> AnyRedis:
        if self._redis is None:
            assert self.redis_url is not None
            self._redis = redis_from_url(
                self.redis_url,
                socket_timeout=self.timeout,
                connect_timeout=self.timeout,
                retry=0,
                max_connections=32,
                pool_timeout=self.timeout,
            )
        return self._redis

    async def _remote(self, key: str, args: tuple[int, int, int, Mode]) -> Step:
        client = self._client()
        async with asyncio.timeout(self.timeout):
            try:
                reply = await client.evalsha(_GCRA_SHA, 1, key, *args)
            except NoScriptError:
                reply = await client.eval(GCRA_LUA, 1, key, *args)
        backlog, retry = int(reply[0]), int(reply[1])
        return Step(backlog, retry, args[0] + backlog)

    async def step(self, key: str, now: int, cost: int, capacity: int, mode: Mode) -> Step:
        """One :func:`~wsmq.auth.ratelimit.gcra_step` on ``key``, shared when Redis answers."""
        if self.redis_url is not None:
            if self._down_until is not None and self.clock() >= self._down_until:
                self._down_until = None
            if self._down_until is None:
                try:
                    result = await self._remote(key, (now, cost, capacity, mode))
                except (RedisError, OSError, TimeoutError) as exc:
                    if not self._outage:
                        log.warning(
                            "rate-limit counters: Redis failed (%s); counting on this node",
                            type(exc).__name__,
                        )
                    self._outage = True
                    self._down_until = self.clock() + self.retry_interval
                else:
                    if self._outage:
                        log.info("rate-limit counters: Redis answers again; counting shared")
                        self._outage = False
                    return result
        return self.local.step(key, now, cost, capacity, mode)

    async def aclose(self) -> None:
        """Close the Redis connections (counting goes on locally if used again)."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

"""Who may call the API: ``Authorization: Bearer <key>``, the endpoint's scope, a rate per key.

Keys are checked by :class:`wsmq.auth.apikeys.ApiKeyIndex` (the same cost for a known and an
unknown key). Each key may make ``api_rate_limit`` requests per minute, counted in Redis and
shared by every node (per node while Redis is down), GCRA as the auth endpoints' limits. A
request without a valid key counts against its client address instead, with the same budget,
so a flood of bad keys from one address gets 429 too (and a hit costs what a miss costs: one
counter step).
"""

from __future__ import annotations

import time
from collections.abc import Collection

from aiohttp import web

from wsmq.auth.apikeys import SCOPES, ApiKey, ApiKeyIndex
from wsmq.auth.routes import client_address
from wsmq.auth.shared_counters import SharedCounters, counter_key

from .errors import ApiError

__all__ = ["ApiAccess"]

_MAX_KEY = 256  # longer than any key we issue: refused before hashing


class ApiAccess:
    """Authenticate, authorize and rate-limit one API request."""

    def __init__(
        self,
        index: ApiKeyIndex | None,
        counters: SharedCounters,
        *,
        per_minute: int,
        ns: str,
        trusted_proxies: Collection[str] = (),
    ) -> None:
        self.index = index
        self.counters = counters
        self.per_minute = per_minute
        self.ns = ns
        self.trusted_proxies = frozenset(trusted_proxies)

    async def check(self, request: web.Request, scope: str | None) -> ApiKey:
        """The request's key if it has ``scope`` (None: any valid key); else 401
        ``unauthorized`` (no key, unknown key), 403 ``forbidden`` (the key lacks the scope) or
        429 ``rate_limited``."""
        assert scope is None or scope in SCOPES
        header = request.headers.get("Authorization", "")
        kind, _, presented = header.partition(" ")
        presented = presented.strip()
        if kind.lower() != "bearer" or not presented or len(presented) > _MAX_KEY:
            await self._refused(request)
            raise ApiError(
                "unauthorized", "an API key is required: Authorization: Bearer <key>", 401
            )
        key: ApiKey | None = None
        if self.index is not None:
            try:
                key = await self.index.check(presented)
            except Exception:  # the store never answered since start: nothing to check
                raise ApiError("unavailable", "the API key store is unavailable", 503) from None
        if key is None:
            await self._refused(request)
            raise ApiError("unauthorized", "the API key is not valid", 401)
        await self._take("apikey", key.name, "with this key")
        if scope is not None and scope not in key.scopes:
            raise ApiError("forbidden", f"the API key lacks the {scope!r} scope", 403)
        return key

    async def _refused(self, request: web.Request) -> None:
        address = client_address(
            request.remote, request.headers.get("X-Forwarded-For"), self.trusted_proxies
        )
        await self._take("apiaddr", address, "without a valid key from this address")

    async def _take(self, kind: str, subject: str, what: str) -> None:
        window = 60_000
        cost = max(1, window // self.per_minute)
        counter = counter_key(self.ns, kind, subject, b"wsmq-api")
        step = await self.counters.step(counter, int(time.time() * 1000), cost, window, "take")
        if step.retry:
            raise ApiError(
                "rate_limited",
                f"more than {self.per_minute} requests per minute {what}",
                429,
                retry_after=step.retry / 1000,
            )

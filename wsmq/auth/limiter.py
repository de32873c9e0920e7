"""Attempt limits of the auth endpoints, shared by every node through Redis.

- **Per client address**: at most ``attempts_per_ip`` requests per ``window`` (sliding), every
  request counted whatever its outcome; over it, ``429 rate_limited`` with ``Retry-After``.
- **Per user** (the name or id a request names, existing or not): a slowdown, not a lock-out.
  The first ``user_free_failures`` failures per ``window`` cost nothing; each further one
  doubles the delay every later attempt for that user waits before it is checked, from
  :data:`FIRST_DELAY` up to ``user_max_delay``. The real user still gets in (after at most
  ``user_max_delay``) while someone guesses their password. Optionally ``user_lockout``
  failures per window refuse further attempts with 429: a hard cap on guesses that also lets
  anyone lock the user out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from wsmq.auth.errors import AuthError
from wsmq.auth.ratelimit import Mode, Step
from wsmq.auth.shared_counters import SharedCounters, counter_key

#: Delay (s) after the first failure beyond ``user_free_failures``; it doubles with each more.
FIRST_DELAY = 0.25


@dataclass(frozen=True)
class AuthLimits:
    """The numbers of an :class:`AuthLimiter` (see the module docstring)."""

    attempts_per_ip: int = 50
    window: float = 60.0
    user_free_failures: int = 10
    user_max_delay: float = 5.0
    user_lockout: int = 0

    def __post_init__(self) -> None:
        if self.attempts_per_ip < 1 or self.user_free_failures < 1:
            raise ValueError("attempts_per_ip and user_free_failures must be >= 1")
        if not 1.0 <= self.window <= 86_400:
            raise ValueError("window must be between 1 s and a day")
        if self.user_max_delay < 0 or self.user_lockout < 0:
            raise ValueError("user_max_delay and user_lockout must be >= 0")

    @property
    def ip_cost(self) -> int:
        """Milliseconds one request adds to its address's counter."""
        return max(1, round(self.window * 1000 / self.attempts_per_ip))

    @property
    def failure_cost(self) -> int:
        """Milliseconds one failure adds to its user's counter (one failure drains per this)."""
        return max(1, round(self.window * 1000 / self.user_free_failures))

    @property
    def failure_capacity(self) -> int:
        """Most failures remembered per user, in ms: enough to reach the longest delay (and
        the lock-out), no more, so an attack's slowdown ends soon after the attack."""
        longest = max(self.user_max_delay, FIRST_DELAY)
        doublings = 1 + math.ceil(math.log2(longest / FIRST_DELAY))
        failures = max(self.user_free_failures + doublings, self.user_lockout)
        return failures * self.failure_cost

    def delay(self, backlog: int) -> float:
        """Seconds an attempt waits when its user's counter holds ``backlog`` ms."""
        excess = math.ceil(backlog / self.failure_cost - self.user_free_failures - 1e-9)
        if excess <= 0:
            return 0.0
        return min(self.user_max_delay, FIRST_DELAY * 2.0 ** min(excess - 1, 32))


def rate_limited(retry_ms: int) -> AuthError:
    """The 429 for a refusal that may be retried in ``retry_ms``."""
    wait = max(1, math.ceil(retry_ms / 1000))
    return AuthError("rate_limited", f"too many attempts, retry in {wait} s", retry_after=wait)


class AuthLimiter:
    """Apply :class:`AuthLimits` with counters shared through ``counters``.

    Args:
        limits: the numbers.
        counters: where the counts live (:class:`SharedCounters`; in memory when None).
        ns: key namespace (the RSMQ ``ns``): keys are ``{ns}:ratelimit:...``.
        salt: keys the digests of user names and addresses (give the same on every node).
        clock: wall-clock seconds (shared between nodes, so keep them NTP-synchronised).
        sleep: how the per-user delay is waited.
    """

    def __init__(
        self,
        limits: AuthLimits | None = None,
        counters: SharedCounters | None = None,
        *,
        ns: str = "rsmq",
        salt: bytes = b"",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or AuthLimits()
        self.counters = counters or SharedCounters(None)
        self.ns = ns
        self.salt = salt
        self.clock = clock
        self.sleep = sleep

    async def _step(self, kind: str, subject: str, mode: Mode) -> Step:
        lim = self.limits
        key = counter_key(self.ns, kind, subject, self.salt)
        now = int(self.clock() * 1000)
        if kind == "ip":
            return await self.counters.step(key, now, lim.ip_cost, int(lim.window * 1000), mode)
        return await self.counters.step(key, now, lim.failure_cost, lim.failure_capacity, mode)

    async def admit(self, address: str) -> None:
        """Count a request from ``address``; ``rate_limited`` (429) over the limit."""
        step = await self._step("ip", address, "take")
        if step.retry:
            raise rate_limited(step.retry)

    async def before_attempt(self, user: str) -> None:
        """Wait the delay ``user``'s recent failures call for (or refuse, with a lock-out)."""
        lim = self.limits
        step = await self._step("user", user, "peek")
        if lim.user_lockout:
            over = step.backlog - (lim.user_lockout - 1) * lim.failure_cost
            if over > 0:
                raise rate_limited(over)
        delay = lim.delay(step.backlog)
        if delay > 0:
            await self.sleep(delay)

    async def failed(self, user: str) -> None:
        """Count a failed attempt for ``user``."""
        await self._step("user", user, "add")

    async def aclose(self) -> None:
        """Close the counters' Redis connections."""
        await self.counters.aclose()

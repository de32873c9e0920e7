"""One backoff rule for every reconnect and retry loop of wsmq.

Exponential with a cap and "equal jitter" (half the delay fixed, half random), so a node's loops
back off quickly under a long outage, and many nodes retrying at once do not retry in step.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays ``base, 2·base, 4·base, ...`` up to ``cap`` seconds, each jittered in [d/2, d]."""

    base: float = 0.05
    cap: float = 5.0
    attempt: int = 0
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def next(self) -> float:
        """Delay in seconds before the next attempt; each call doubles the ceiling."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return ceiling / 2 + self.rand() * ceiling / 2

    async def sleep(self) -> None:
        """Sleep for :meth:`next` seconds."""
        await asyncio.sleep(self.next())

    def reset(self) -> None:
        """Start again from ``base`` (after a success)."""
        self.attempt = 0

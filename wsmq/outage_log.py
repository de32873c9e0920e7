"""Calm logging for reconnect loops: one line when an outage starts, one per interval while it
lasts, one when it ends, however fast the loop retries.

A Redis that does not answer must not flood the log from every component that reconnects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ["REPORT_EVERY", "OutageLog"]

#: Seconds between two "still failing" lines of one outage.
REPORT_EVERY: Final = 60.0


class OutageLog:
    """The log of one component's reconnect loop (``what`` names it in every line).

    Call :meth:`failed` on every failed attempt and :meth:`recovered` once connected.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        every: float = REPORT_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger
        self.what = what
        self.every = every
        self.clock = clock
        self.down_since: float | None = None
        self.attempts = 0
        self._reported_at = 0.0

    def failed(self, reason: str, *, level: int = logging.WARNING, exc_info: bool = False) -> None:
        """One failed attempt: logged when it starts an outage or an interval has passed."""
        now = self.clock()
        self.attempts += 1
        if self.down_since is None:
            self.down_since = self._reported_at = now
            self.log.log(
                level, "%s: %s; retrying with backoff", self.what, reason, exc_info=exc_info
            )
            return
        if now - self._reported_at < self.every:
            return
        self._reported_at = now
        self.log.log(
            level,
            "%s: still failing after %.0f s (%d attempts; last: %s)",
            self.what,
            now - self.down_since,
            self.attempts,
            reason,
            exc_info=exc_info,
        )

    def recovered(self) -> None:
        """Connected: ends the outage (one line if there was one)."""
        if self.down_since is None:
            return
        self.log.warning(
            "%s: connected again after %.1f s (%d failed attempts)",
            self.what,
            self.clock() - self.down_since,
            self.attempts,
        )
        self.down_since = None
        self.attempts = 0

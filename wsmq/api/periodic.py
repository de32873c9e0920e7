"""A background step repeated every ``interval`` seconds, stoppable even when redis-py swallows
a cancellation (it may, when the cancel lands inside a command it then retries)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

__all__ = ["Periodic"]

log = logging.getLogger("wsmq.api")


class Periodic:
    """Runs ``step`` now and then every ``interval`` s until :meth:`stop`; Redis errors are
    logged at debug once per failing stretch (the engine already reports an outage, once)."""

    def __init__(self, name: str, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval = interval
        self.step = step
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def _run(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                await self.step()
                failing = False
            except (RedisError, OSError) as exc:
                if not failing:
                    log.debug("%s failed (%s)", self.name, type(exc).__name__)
                failing = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._stopping.wait()

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name=f"wsmq-{self.name}")

    async def stop(self, grace: float = 1.0) -> None:
        """Stop after the step in progress (cancelled if it takes longer than ``grace``)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(task, return_exceptions=True)

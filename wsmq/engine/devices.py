"""This node's devices: leases, their renewal, and the retention sweep (docs/delivery.md, Devices).

A device subscription (``engine.subscribe(q, sub, device=d)``) registers the device on the
queue and takes this node's *lease* on it: a device with a current lease is in use and is never
removed. The lease lasts :data:`LEASE_MS` and is renewed every :data:`RENEW_EVERY` seconds while
the node holds a subscription of the device; when the last one ends it is dropped (last seen =
now). If the node dies, the lease simply expires and counts as the device's last sighting.

Each node also sweeps, every :meth:`DeviceLeases.sweep_interval` seconds, every queue that has
devices, removing those unused for longer than the retention (a fan-out that finds messages
to copy does the same) and dropping inbox messages older than the queue's message
TTL. Renewals and sweeps run in a task of their own, so a long
sweep never delays the fallback poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable

from wsmq.engine.health import TRANSIENT_ERRORS
from wsmq.engine.keyed_locks import KeyedLocks
from wsmq.engine.ports import QueueStore
from wsmq.protocol.names import inbox_name

__all__ = ["LEASE_MS", "RENEW_EVERY", "DeviceLeases"]

log = logging.getLogger("wsmq.engine")

#: How long one lease keeps a device in use without renewal (a node SIGKILLed keeps its devices
#: "in use" this long at most).
LEASE_MS = 60_000
#: Renewal period of this node's leases (a third of the lease: two renewals may fail).
RENEW_EVERY = LEASE_MS / 3000


class DeviceLeases:
    """The devices this node uses, counted per (queue, device)."""

    def __init__(
        self,
        queues: QueueStore,
        retention: float,
        on_removed: Callable[[int], object] | None = None,
        max_devices: int = 0,
    ) -> None:
        if retention <= 0:
            raise ValueError("device_retention must be > 0")
        if max_devices < 0:
            raise ValueError("max_devices_per_queue must be >= 0")
        #: Most devices one queue may have (0: no limit); a new one beyond raises TooManyDevices.
        self.max_devices = max_devices
        self.queues = queues
        self.retention_ms = max(1, int(retention * 1000))
        self.on_removed = on_removed
        #: This node's name in the lease members (random: a restarted node is a new holder).
        self.holder = secrets.token_hex(8)
        self._held: dict[tuple[str, str], int] = {}
        # Per device: a registration must not overtake the release before it (on another pool
        # connection, the release would land last and drop the lease of a device in use).
        self._locks = KeyedLocks()
        # Monotonic seconds of the last renewal and sweep (0: the first tick does both).
        self._renewed_at = 0.0
        self._swept_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def sweep_interval(self) -> float:
        """Seconds between sweeps: half the retention, between 0.2 s and an hour."""
        return min(max(self.retention_ms / 2000, 0.2), 3600.0)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wsmq-device-leases")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        tick = min(RENEW_EVERY, self.sweep_interval)
        while True:
            try:
                await self.maintain(time.monotonic())
            except TRANSIENT_ERRORS as exc:
                if not self._failing:  # the engine's health episode logs the outage itself
                    log.info("device leases: Redis unavailable (%s)", type(exc).__name__)
                self._failing = True
            except Exception:
                log.exception("device lease renewal or sweep failed", extra={"event": "devices"})
            else:
                self._failing = False
            await asyncio.sleep(tick)

    def holding(self, qname: str, device: str) -> bool:
        return (qname, device) in self._held

    async def acquire(self, qname: str, device: str) -> None:
        """A subscription of ``device`` starts here: register it (Redis errors and
        :class:`~wsmq.queue.devices.TooManyDevices` propagate)."""
        key = (qname, device)
        async with self._locks.hold(inbox_name(qname, device)):
            if key not in self._held:
                await self.queues.register_device(
                    qname, device, self.holder, LEASE_MS, max_devices=self.max_devices
                )
                self._held[key] = 0
            self._held[key] += 1

    async def release(self, qname: str, device: str) -> None:
        """A subscription of ``device`` ended; the last one drops this node's lease."""
        key = (qname, device)
        async with self._locks.hold(inbox_name(qname, device)):
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
                return
            self._held.pop(key, None)
            await self.queues.release_device(qname, device, self.holder)

    def removed(self, qname: str, devices: tuple[str, ...]) -> None:
        if devices:
            log.info(
                "queue %s: removed %d idle device inbox(es)",
                qname,
                len(devices),
                extra={"event": "devices_removed", "queue": qname},
            )
            if self.on_removed is not None:
                self.on_removed(len(devices))

    async def maintain(self, now: float) -> None:
        """Renew the leases and sweep, each when due (``now``: monotonic seconds)."""
        if self._held and now - self._renewed_at >= RENEW_EVERY:
            self._renewed_at = now
            by_queue: dict[str, list[str]] = {}
            for qname, device in self._held:
                by_queue.setdefault(qname, []).append(device)
            for qname, devices in by_queue.items():
                await self.queues.touch_devices(qname, devices, self.holder, LEASE_MS)
        if now - self._swept_at >= self.sweep_interval:
            self._swept_at = now
            await self.sweep()

    async def sweep(self) -> None:
        """Remove the devices unused for longer than the retention, on every queue, and drop
        the inbox messages past their queue's message TTL (an offline device's inbox would
        otherwise keep them until the retention ends)."""
        for qname in await self.queues.device_queue_names():
            result = await self.queues.fan_out(qname, self.retention_ms, budget=0)
            self.removed(qname, result.removed)
            if result.expired:
                log.info(
                    "queue %s: dropped %d inbox message(s) past the message TTL",
                    qname,
                    result.expired,
                    extra={"event": "inbox_expired", "queue": qname},
                )
            if result.live == 0 and not result.group:
                await self.queues.forget_device_queue(qname)

    async def release_all(self) -> None:
        """Shutdown: drop every lease this node holds (last seen = now)."""
        held, self._held = list(self._held), {}
        for qname, device in held:
            await self.queues.release_device(qname, device, self.holder)

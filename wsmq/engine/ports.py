"""What the delivery engine needs from the layers below it, as narrow Protocols.

:class:`wsmq.queue.Queues` is the :class:`QueueStore` and
:class:`wsmq.realtime.listener.RealtimeListener` the :class:`Notifications` of a node; tests and
tools may pass anything with the same methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from wsmq.queue.devices import FanOut
from wsmq.queue.models import Message

__all__ = ["Notifications", "QueueStore"]


class QueueStore(Protocol):
    """The queue operations the engine uses (RSMQ-compatible, on Redis)."""

    async def receive_with_next(
        self,
        qname: str,
        count: int,
        vt: int | None = None,
        *,
        fan_out_check: bool = False,
        devices_only: bool = False,
        park: str | None = None,
    ) -> tuple[list[Message], float | None]: ...

    async def delete_messages(self, qname: str, ids: Iterable[str]) -> int: ...

    async def change_messages_visibility(self, qname: str, ids: Sequence[str], vt: int) -> int: ...

    async def visible_counts(self, qnames: Iterable[str]) -> dict[str, int]: ...

    async def now_ms(self) -> int: ...

    # Device inboxes (wsmq.queue.devices); ``qname`` above may also name an inbox ``q@d``.

    async def fan_out(self, qname: str, retention_ms: int, *, budget: int = ...) -> FanOut: ...

    async def register_device(
        self, qname: str, device: str, holder: str, lease_ms: int, *, max_devices: int = ...
    ) -> bool: ...

    async def touch_devices(
        self, qname: str, devices: list[str], holder: str, lease_ms: int
    ) -> None: ...

    async def release_device(self, qname: str, device: str, holder: str) -> None: ...

    async def leave_device(
        self, qname: str, device: str, holder: str = "", *, holding: bool = False
    ) -> bool: ...

    async def device_queue_names(self) -> list[str]: ...

    async def forget_device_queue(self, qname: str) -> None: ...


class Notifications(Protocol):
    """Realtime "a message was sent to queue q" notifications, per subscribed queue."""

    def set_callback(self, fn: Callable[[str], None] | None) -> None: ...

    async def start(self) -> None: ...

    async def subscribe(self, qname: str) -> bool: ...

    async def unsubscribe(self, qname: str) -> None: ...

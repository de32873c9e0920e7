"""One-off publishing: ``await send_message(qname, message)`` without managing a client."""

from __future__ import annotations

from .errors import QueueNotFound
from .queues import Queues

__all__ = ["send_message"]


async def send_message(
    qname: str,
    message: str,
    *,
    delay: int | None = None,
    redis_url: str = "redis://localhost:6379/0",
    ns: str = "rsmq",
    realtime: bool = True,
    create: bool = False,
) -> str:
    """Send one message over a short-lived connection and return its id.

    With ``create=True`` a missing queue is created with RSMQ's defaults first; otherwise a
    missing queue raises ``QueueNotFound``.  For many sends keep one :class:`Queues` instead.
    ``realtime`` publishes the RSMQ notification so waiting consumers react at once.
    """
    async with Queues.from_url(redis_url, ns=ns, realtime=realtime) as queues:
        try:
            return await queues.send_message(qname, message, delay=delay)
        except QueueNotFound:
            if not create:
                raise
        await queues.ensure_queue(qname)
        return await queues.send_message(qname, message, delay=delay)

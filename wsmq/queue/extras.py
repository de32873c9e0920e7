"""wsmq's queue settings beyond RSMQ's, stored in ``:Q`` hash fields RSMQ ignores.

``max_receive_count`` (a message received that many times goes to ``dead_letter_queue``, or is
dropped), ``dead_letter_queue`` and ``message_ttl``.  An empty value switches one off.
"""

from __future__ import annotations

from typing import TypedDict

from . import validation as v
from .errors import InvalidValue

__all__ = [
    "F_DLQ",
    "F_GROUP",
    "F_MAXRC",
    "F_TTL",
    "QueueSettings",
    "dead_letter_of",
    "extras_pairs",
]

F_MAXRC, F_DLQ, F_TTL = "wsmq:maxrc", "wsmq:dlq", "wsmq:ttl"
#: Marks a queue as a group (docs/delivery.md "Groups"); set by ``groups.add``, never by settings.
F_GROUP = "wsmq:group"


class QueueSettings(TypedDict, total=False):
    """The keyword arguments of :meth:`Queues.create_queue`."""

    vt: int
    delay: int
    maxsize: int
    max_receive_count: int | None
    dead_letter_queue: str | None
    message_ttl: int | None


def extras_pairs(
    qname: str,
    max_receive_count: int | None,
    dead_letter_queue: str | None,
    message_ttl: int | None,
) -> list[str]:
    """Validated ``wsmq:*`` field/value pairs (``None``: not given); an empty value = off."""
    out: list[str] = []
    if max_receive_count is not None:
        count = v.validate_max_receive_count(max_receive_count)
        out += [F_MAXRC, str(count) if count else ""]
    if dead_letter_queue is not None:
        dlq = ""
        if dead_letter_queue:
            dlq = v.validate_qname(dead_letter_queue, "dead_letter_queue")
        if dlq == qname:
            raise InvalidValue(
                "dead_letter_queue", 0, 0, "dead_letter_queue must differ from qname"
            )
        out += [F_DLQ, dlq]
    if message_ttl is not None:
        ttl = v.validate_message_ttl(message_ttl)
        out += [F_TTL, str(ttl) if ttl else ""]
    return out


def dead_letter_of(pairs: list[str]) -> str:
    """The dead-letter queue named in field/value ``pairs`` ('' when none)."""
    return dict(zip(pairs[::2], pairs[1::2], strict=True)).get(F_DLQ, "")

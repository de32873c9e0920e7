"""Value objects returned by the queue API (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .ids import sent_ms

__all__ = ["Message", "QueueAttributes", "messages_from_reply", "text"]


def text(value: object) -> str:
    """A reply value as ``str`` (clients may or may not decode replies)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_int(value: object, default: int = 0) -> int:
    """A hash value as ``int`` like RSMQ's ``parseInt(x) || default``."""
    if value is None or value == b"" or value == "":
        return default
    try:
        return int(float(text(value)))
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class Message:
    """A received message, as RSMQ's ``receiveMessage`` returns it.

    ``rc``: how often it has been received (this receive included); ``fr``: first receive,
    epoch ms; ``sent``: send time, epoch ms (fractional: the id holds microseconds).
    """

    id: str
    message: str
    rc: int
    fr: int
    sent: float


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    """A queue's settings and counters (RSMQ's ``getQueueAttributes`` plus wsmq extras).

    ``vt``/``delay`` in seconds, ``created``/``modified`` epoch seconds; ``msgs`` is every
    message in the queue, ``hiddenmsgs`` those not receivable right now (in flight or delayed).
    The extras are ``None`` when not configured.
    """

    vt: int
    delay: int
    maxsize: int
    totalrecv: int
    totalsent: int
    created: int
    modified: int
    msgs: int
    hiddenmsgs: int
    max_receive_count: int | None = None
    dead_letter_queue: str | None = None
    message_ttl: int | None = None
    totalexpired: int = 0
    totalexceeded: int = 0

    def to_dict(self) -> dict[str, int | str | None]:
        """Plain dict (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_reply(
        cls, fields: Sequence[object], msgs: int | str, hidden: int | str
    ) -> QueueAttributes:
        """Build from the attributes script's reply (HMGET values in its field order)."""
        (
            vt, delay, maxsize, recv, sent, created, modified, maxrc, dlq, ttl, expired, exceeded,
        ) = fields  # fmt: skip
        return cls(
            vt=to_int(vt),
            delay=to_int(delay),
            maxsize=to_int(maxsize),
            totalrecv=to_int(recv),
            totalsent=to_int(sent),
            created=to_int(created),
            modified=to_int(modified),
            msgs=int(msgs),
            hiddenmsgs=int(hidden),
            max_receive_count=to_int(maxrc) or None,
            dead_letter_queue=text(dlq) if dlq else None,
            message_ttl=to_int(ttl) or None,
            totalexpired=to_int(expired),
            totalexceeded=to_int(exceeded),
        )


def messages_from_reply(reply: Sequence[Any], start: int = 0) -> list[Message]:
    """Messages from a flat ``id, body, rc, fr, id, ...`` script reply (untyped Redis data)."""
    # The delivery hot path parses every message here: fast paths for the usual reply types
    # (str values, integer ``fr``), the general helpers otherwise; same results either way.
    out: list[Message] = []
    append = out.append
    for i in range(start, len(reply), 4):
        msg_id, body, rc, fr = reply[i], reply[i + 1], reply[i + 2], reply[i + 3]
        if msg_id.__class__ is not str:
            msg_id = text(msg_id)
        if body.__class__ is not str:
            body = text(body)
        try:
            fr = int(fr)
        except (TypeError, ValueError):
            fr = to_int(fr)
        append(Message(msg_id, body, int(rc), fr, sent_ms(msg_id)))
    return out

"""The payload a send publishes when it hands its message to a parked node (pure).

``send.lua`` receives the message for the node (rc 1, first receive now, hidden for the vt the
node parked with) and publishes ``<queue>\\n<id>\\n<fr>\\n<body>`` on the node's hand-off channel
(:meth:`~wsmq.queue.keys.KeyLayout.handoff_channel`). Queue names and ids cannot contain a
newline; the body may. See docs/delivery.md, "Hand-off".
"""

from __future__ import annotations

from .ids import sent_ms
from .models import Message

__all__ = ["parse_handoff"]


def parse_handoff(payload: str) -> tuple[str, Message] | None:
    """``(queue, message)`` from a hand-off payload; ``None`` if it is not one."""
    parts = payload.split("\n", 3)
    if len(parts) != 4:
        return None
    qname, msg_id, fr, body = parts
    if len(msg_id) != 32 or not fr.isdigit():
        return None
    return qname, Message(id=msg_id, message=body, rc=1, fr=int(fr), sent=sent_ms(msg_id))

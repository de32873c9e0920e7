"""RSMQ-compatible queue layer (SPEC §2).

    from wsmq.queue import Queues, Message, QueueError, send_message

Keys, ids, units and error names/messages are RSMQ's, so the ``rsmq`` npm package and wsmq work
on the same queues.  See docs/queue.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsmq._lazy import load_lazy
from wsmq.queue.errors import (
    DeadLetterQueueNotFound,
    InvalidFormat,
    InvalidValue,
    MessageNotString,
    MessageTooLong,
    MissingParameter,
    NoAttributeSupplied,
    NotAGroup,
    QueueError,
    QueueExists,
    QueueNotFound,
)
from wsmq.queue.keys import KeyLayout
from wsmq.queue.models import Message, QueueAttributes
from wsmq.queue.publisher import send_message
from wsmq.queue.queues import Queues

if TYPE_CHECKING:
    from wsmq.realtime.listener import RealtimeListener

__all__ = [
    "DeadLetterQueueNotFound",
    "InvalidFormat",
    "InvalidValue",
    "KeyLayout",
    "Message",
    "MessageNotString",
    "MessageTooLong",
    "MissingParameter",
    "NoAttributeSupplied",
    "NotAGroup",
    "QueueAttributes",
    "QueueError",
    "QueueExists",
    "QueueNotFound",
    "Queues",
    "RealtimeListener",
    "send_message",
]

#: Public here before :mod:`wsmq.realtime` existed; loaded on first use, since the realtime layer
#: sits above this one (importing it eagerly would be an import cycle).
_LAZY = {"RealtimeListener": "wsmq.realtime.listener"}


def __getattr__(name: str) -> object:
    return load_lazy(__name__, _LAZY, globals(), name)

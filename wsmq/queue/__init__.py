"""RSMQ-compatible queue layer (SPEC §2).

    from wsmq.queue import Queues, Message, QueueError, send_message

Keys, ids, units and error names/messages are RSMQ's, so the ``rsmq`` npm package and wsmq work
on the same queues.  See docs/queue.md.
"""

from __future__ import annotations

from .errors import (
    DeadLetterQueueNotFound,
    InvalidFormat,
    InvalidValue,
    MessageNotString,
    MessageTooLong,
    MissingParameter,
    NoAttributeSupplied,
    QueueError,
    QueueExists,
    QueueNotFound,
)
from .keys import KeyLayout
from .models import Message, QueueAttributes
from .publisher import send_message
from .queues import Queues
from .realtime import RealtimeListener

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
    "QueueAttributes",
    "QueueError",
    "QueueExists",
    "QueueNotFound",
    "Queues",
    "RealtimeListener",
    "send_message",
]

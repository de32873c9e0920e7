"""RSMQ-compatible queue layer (SPEC §2).

    from wsmq.queue import Queues, Message, QueueError, send_message

Keys, ids, units and error names/messages are RSMQ's, so the ``rsmq`` npm package and wsmq work
on the same queues.  See docs/queue.md.
"""

from __future__ import annotations

from wsmq.queue.errors import (
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
from wsmq.queue.keys import KeyLayout
from wsmq.queue.models import Message, QueueAttributes
from wsmq.queue.publisher import send_message
from wsmq.queue.queues import Queues
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
    "QueueAttributes",
    "QueueError",
    "QueueExists",
    "QueueNotFound",
    "Queues",
    "RealtimeListener",
    "send_message",
]

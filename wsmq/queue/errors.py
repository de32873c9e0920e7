"""Typed queue errors carrying RSMQ's error names and messages.

RSMQ reports errors as ``Error`` objects whose ``name`` is a short code (``queueNotFound``) and
whose ``message`` comes from a template.  These classes keep both, byte for byte, so code ported
from RSMQ can branch on ``err.name`` and show the same text.  RSMQ's texts do not say which queue
they are about; :meth:`QueueError.describe` gives the sentence to show a person, naming it.
"""

from __future__ import annotations

from wsmq.errors import WsmqError
from wsmq.protocol.names import QNAME_RULE, RESERVED_QNAMES, reserved_detail

__all__ = [
    "DeadLetterQueueNotFound",
    "InvalidFormat",
    "InvalidValue",
    "MessageNotString",
    "MessageTooLong",
    "MissingParameter",
    "NoAttributeSupplied",
    "NotAGroup",
    "QueueError",
    "QueueExists",
    "QueueNotFound",
    "error_from_reply",
]


class QueueError(WsmqError, code="queueError"):
    """Base class of every queue-layer error.

    ``name`` is RSMQ's error name (also the ``code``), ``message`` RSMQ's human-readable text.
    """

    name: str = "queueError"
    default_message: str = "Queue error"

    def __init_subclass__(cls) -> None:
        super().__init_subclass__(code=cls.name)

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message if message is not None else self.default_message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, message={self.message!r})"

    def describe(self, qname: str | None = None) -> str:
        """The error for a person: RSMQ's message, naming ``qname`` (the queue it is about)."""
        return self.message if qname is None else f"{self.message} (queue {qname!r})"


class NoAttributeSupplied(QueueError):
    """``set_queue_attributes`` was called without any attribute."""

    name = "noAttributeSupplied"
    default_message = "No attribute was supplied"


class MissingParameter(QueueError):
    """A required parameter (``qname``, ``id``) is empty."""

    name = "missingParameter"

    def __init__(self, item: str) -> None:
        self.item = item
        super().__init__(f"No {item} supplied")


class InvalidFormat(QueueError):
    """A parameter does not match its format (``qname``, ``id``, ...)."""

    name = "invalidFormat"

    def __init__(self, item: str, message: str | None = None) -> None:
        self.item = item
        super().__init__(message or f"Invalid {item} format")

    def describe(self, qname: str | None = None) -> str:
        """For a queue name (``qname`` or ``dead_letter_queue``): the name and the rule."""
        if qname is None or self.item not in ("qname", "dead_letter_queue"):
            return super().describe(qname)
        why = reserved_detail(qname) if qname in RESERVED_QNAMES else QNAME_RULE
        return f"Invalid queue name {qname!r}: {why}"


class InvalidValue(QueueError):
    """A numeric parameter is out of range or not a number."""

    name = "invalidValue"

    def __init__(self, item: str, min: int, max: int, message: str | None = None) -> None:
        self.item = item
        self.min = min
        self.max = max
        super().__init__(message or f"{item} must be between {min} and {max}")


class MessageNotString(QueueError):
    """The message body is not a ``str``."""

    name = "messageNotString"
    default_message = "Message must be a string"


class MessageTooLong(QueueError):
    """The message is longer than the queue's ``maxsize`` (UTF-16 code units)."""

    name = "messageTooLong"
    default_message = "Message too long"

    def describe(self, qname: str | None = None) -> str:
        if qname is None:
            return self.message
        return f"Message too long for queue {qname!r} (longer than its maxsize)"


class QueueNotFound(QueueError):
    """The queue does not exist."""

    name = "queueNotFound"
    default_message = "Queue not found"

    def describe(self, qname: str | None = None) -> str:
        return self.message if qname is None else f"Queue {qname!r} not found"


class DeadLetterQueueNotFound(QueueNotFound):
    """The configured dead-letter queue does not exist (wsmq extension)."""

    default_message = "Dead-letter queue not found"

    def describe(self, qname: str | None = None) -> str:
        """``qname`` is the dead-letter queue's name here."""
        return self.message if qname is None else f"Dead-letter queue {qname!r} not found"


class QueueExists(QueueError):
    """``create_queue`` on a queue that already exists."""

    name = "queueExists"
    default_message = "Queue exists"

    def describe(self, qname: str | None = None) -> str:
        return self.message if qname is None else f"Queue {qname!r} exists"


class NotAGroup(QueueError):
    """A group operation named a queue that is not a group (wsmq extension; see
    :meth:`wsmq.queue.groups.Groups.add`), or ``groups.add`` named an existing plain queue."""

    name = "notAGroup"
    default_message = "Queue is not a group"

    def describe(self, qname: str | None = None) -> str:
        return self.message if qname is None else f"Queue {qname!r} is not a group"


# Lua scripts signal these by ``redis.error_reply(<name>)``.
_BY_REPLY: dict[str, type[QueueError]] = {
    "queueNotFound": QueueNotFound,
    "queueExists": QueueExists,
    "messageTooLong": MessageTooLong,
    "dlqNotFound": DeadLetterQueueNotFound,
}


def error_from_reply(text: str) -> QueueError | None:
    """Map an error reply raised by one of our Lua scripts to its typed error."""
    cls = _BY_REPLY.get(text.strip().split(" ", 1)[0])
    return cls() if cls is not None else None

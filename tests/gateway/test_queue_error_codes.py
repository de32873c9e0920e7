"""The one table from queue errors (RSMQ's names) to wire codes, in the protocol layer."""

from __future__ import annotations

from wsmq.protocol import wire as p
from wsmq.queue import QueueError
from wsmq.queue.errors import MessageTooLong, QueueNotFound


def _names(cls: type[QueueError]) -> set[str]:
    return {cls.name}.union(*(_names(sub) for sub in cls.__subclasses__()))


def test_table_is_keyed_by_the_queue_layers_error_names() -> None:
    assert set(p.QUEUE_ERROR_CODES) <= _names(QueueError)
    assert p.QUEUE_ERROR_CODES[QueueNotFound.name] == p.ErrorCode.QUEUE_NOT_FOUND
    assert p.QUEUE_ERROR_CODES[MessageTooLong.name] == p.ErrorCode.MESSAGE_TOO_LONG

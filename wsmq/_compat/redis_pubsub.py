"""redis-py's hiredis parser, read directly by the pub/sub listener.

:func:`hiredis_replies` gives, for a connected ``PubSub``, the hiredis reader's ``gets`` (one
parsed reply, or :data:`NOT_ENOUGH_DATA`) and the parser's ``read_from_socket`` (feeds the
reader; raises on EOF): the listener takes every reply already received in a plain loop
instead of one ``get_message`` call (a stack of redis-py layers) per reply. It touches
``Connection._parser``, ``_HiredisParser._reader`` and ``read_from_socket``, and imports
``redis._parsers.hiredis.NOT_ENOUGH_DATA``. Read against redis-py 8.1.0 and 8.2.0; public
path: ``PubSub.get_message``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple

from redis.asyncio.client import PubSub

from wsmq._compat import FastPath, allowed, register

try:  # redis-py's "not enough data yet" sentinel for its hiredis readers
    from redis._parsers.hiredis import NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout: the public path only
    NOT_ENOUGH_DATA = None

__all__ = ["HIREDIS_PUBSUB", "NOT_ENOUGH_DATA", "HiredisReplies", "hiredis_replies"]


def _probe() -> bool:
    try:
        from redis._parsers.hiredis import _AsyncHiredisParser
    except ImportError:
        return False
    return NOT_ENOUGH_DATA is not None and callable(
        getattr(_AsyncHiredisParser, "read_from_socket", None)
    )


HIREDIS_PUBSUB: Final = register(
    FastPath(
        name="hiredis_pubsub",
        library="redis",
        verified=("8.1.", "8.2."),
        touches="Connection._parser, _AsyncHiredisParser._reader/read_from_socket, "
        "redis._parsers.hiredis.NOT_ENOUGH_DATA",
        fallback="PubSub.get_message, one reply per call",
        probe=_probe,
    )
)
_available = HIREDIS_PUBSUB.version_ok() and HIREDIS_PUBSUB.probe()


class HiredisReplies(NamedTuple):
    """The two entry points of a connection's hiredis parser."""

    gets: Callable[[], Any]  #: one reply, :data:`NOT_ENOUGH_DATA`, or an error object
    read_from_socket: Callable[[], Awaitable[Any]]  #: feed the reader; raises on EOF


def hiredis_replies(pubsub: PubSub) -> HiredisReplies | None:
    """Direct access to ``pubsub``'s parser, or ``None`` (no hiredis, another redis-py, fast
    paths off, not connected)."""
    if not (_available and allowed()):
        return None
    parser = getattr(pubsub.connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    gets = getattr(reader, "gets", None)
    read = getattr(parser, "read_from_socket", None)
    if not callable(gets) or not callable(read):
        return None
    return HiredisReplies(gets, read)

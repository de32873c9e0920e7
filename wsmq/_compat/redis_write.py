"""Redis connections that write a command without a task per write.

redis-py 8 sends every command of a connection that has a ``socket_timeout`` through
``asyncio.wait_for(self._send_packed_command(...), socket_timeout)``. ``wait_for`` wraps the
write in a new task, which costs CPU and one event-loop iteration before the bytes leave, for
every command, although the write almost never waits: the socket takes the bytes at once.
:func:`direct_write` gives a connection class whose ``send_packed_command`` hands the bytes to
the transport directly and falls back to a bounded wait (the same ``wait_for``, the same
errors) only when the transport kept some of them buffered, i.e. when a wait is really needed.
Everything else (connecting, health checks, errors, disconnects) is redis-py's.

The profile that led here is in ``docs/performance.md`` (round 3, item 8).
``tests/test_redis_write.py`` checks the direct path is taken with the installed redis-py, and
that a write that does wait still obeys ``socket_timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar, cast

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wsmq._compat import FastPath, allowed, register

__all__ = ["DIRECT_WRITE", "direct_write"]


def _probe() -> bool:
    names = AbstractConnection.send_packed_command.__code__.co_names
    return "_send_packed_command" in names and hasattr(AbstractConnection, "_writer")


DIRECT_WRITE = register(
    FastPath(
        name="direct_write",
        library="redis",
        verified=("8.1.", "8.2."),
        touches="AbstractConnection._writer (its StreamWriter); overrides send_packed_command",
        fallback="redis-py's send_packed_command (a wait_for task per command)",
        probe=_probe,
    )
)
_available = DIRECT_WRITE.version_ok() and DIRECT_WRITE.probe()


if TYPE_CHECKING:
    _Connection = AbstractConnection  # what the mixin is mixed into (typed as such)
else:
    _Connection = object

C = TypeVar("C", bound=AbstractConnection)


class _DirectWrite(_Connection):
    """Mixin over a redis-py asyncio connection class (see the module docstring)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.socket_timeout or not self.is_connected:
            await super().send_packed_command(command, check_health)
            return
        if check_health:
            check: Callable[[], Awaitable[None]] = self.check_health  # untyped in redis-py
            await check()  # may PING, or reconnect: take the writer after it
        writer: asyncio.StreamWriter | None = getattr(self, "_writer", None)
        transport = getattr(writer, "transport", None)
        if (
            writer is None
            or transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            await super().send_packed_command(command, False)
            return
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            writer.writelines(command)
            if transport.get_write_buffer_size():  # the socket did not take it all: wait
                await asyncio.wait_for(writer.drain(), self.socket_timeout)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            # As redis-py: a write cut short leaves the stream in an unknown state.
            await self.disconnect(nowait=True)
            raise


_classes: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def direct_write(connection_class: type[C]) -> type[C]:
    """``connection_class`` with the direct write path (one subclass per class, cached);
    ``connection_class`` itself when the fast path is off or not available."""
    if not (_available and allowed()):
        return connection_class
    if issubclass(connection_class, _DirectWrite):
        return connection_class
    fast = _classes.get(connection_class)
    if fast is None:
        fast = _classes[connection_class] = type(
            f"DirectWrite{connection_class.__name__}",
            (_DirectWrite, connection_class),
            {"__module__": __name__},
        )
    return cast("type[C]", fast)  # a subclass of connection_class

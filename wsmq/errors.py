"""The root of every wsmq exception, and the tree below it.

Every exception wsmq raises is a :class:`WsmqError`: it has a machine-readable ``code`` string
and a human-readable ``message``, so a caller can catch one class and branch on ``code``.
Each family lives next to the code that raises it (``wsmq.errors`` stays dependency-free so
every layer can import it); where a class was a subclass of a built-in it still is, so
``except ValueError`` / ``except ConnectionError`` callers keep working.

.. code-block:: text

    WsmqError                               wsmq.errors
     ├── ConfigError (ValueError)           wsmq.errors; alias wsmq.settings.SettingsError
     ├── RedisUrlError (ValueError)         wsmq.redis_url
     ├── QueueError                         wsmq.queue.errors; ``code`` is RSMQ's error name
     │    ├── NoAttributeSupplied, MissingParameter, InvalidFormat, InvalidValue,
     │    ├── MessageNotString, MessageTooLong, QueueExists
     │    └── QueueNotFound
     │         └── DeadLetterQueueNotFound
     ├── QueueFansOut, DevicesChanging,     wsmq.queue.devices
     │   TooManyDevices
     ├── DeviceInUse (RuntimeError)         wsmq.queue.devices
     ├── AuthError                          wsmq.auth.errors; ``code`` is the ``reason``
     ├── JwksError                          wsmq.auth.errors; fetching an identity provider's keys
     ├── UserStoreError                     wsmq.auth.errors
     │    ├── UserExists, UserNotFound
     │    └── InvalidUserData (ValueError)
     ├── ProtocolError                      wsmq.protocol.wire; ``code`` is a wire error code
     ├── EngineStopped (RuntimeError)       wsmq.engine.delivery
     ├── DeleteNotApplied (ConnectionError) wsmq.engine.settle
     ├── PoolExhaustedError (redis MaxConnectionsError)  wsmq.connections
     ├── CliError                           wsmq.cli.common
     ├── PortInUse (OSError)                wsmq.demo.stack
     ├── NodeStartError (RuntimeError)      wsmq.testing.nodes
     └── RedisProcessError (RuntimeError)   wsmq.testing.redisproc

A family's code is given in its class statement (``class X(WsmqError, code="x")``); instances
may carry a more precise one (``ProtocolError``, ``AuthError``, ``CliError``).
"""

from __future__ import annotations

__all__ = ["ConfigError", "WsmqError"]


class WsmqError(Exception):
    """Base class of every wsmq exception: ``code`` for programs, ``message`` for people."""

    code: str = "wsmq_error"
    message: str

    def __init_subclass__(cls, code: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message if message is not None else ""
        # No message: no args, so str() and repr() stay what the built-in base would give.
        super().__init__(*(() if message is None else (message,)))


class ConfigError(WsmqError, ValueError, code="invalid_setting"):
    """A setting has a value of the wrong type or out of range; ``name`` is the setting."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"setting {name!r}: {message}")
        self.name = name

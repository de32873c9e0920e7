"""The client's exceptions: one family under :class:`wsmq.errors.WsmqError`.

.. code-block:: text

    ClientError                  anything the client raises to its caller
     ├── AuthenticationFailed     the server refused the tokens, even fresh ones from tokens(),
     │                            or tokens() raised Unauthorized
     ├── ConnectionClosed         a close the client must not retry (1008, 1009, ...), or a
     │    │                       command whose connection closed before the reply
     │    └── ClientClosed        ... because the application closed the client
     ├── CommandFailed            the server answered a command with an ``error`` frame
     └── Unauthorized             raised by the application's tokens(): no tokens, ever (logged
                                  out); any other exception of tokens() is retried
"""

from __future__ import annotations

from wsmq.errors import WsmqError

__all__ = [
    "AuthenticationFailed",
    "ClientClosed",
    "ClientError",
    "CommandFailed",
    "ConnectionClosed",
    "Unauthorized",
]


class ClientError(WsmqError, code="client_error"):
    """Base of every error of :mod:`wsmq.client`."""


class AuthenticationFailed(ClientError, code="authentication_failed"):
    """The server refused the credentials (HTTP 401/403, or 4401/4403 again after fresh tokens),
    or ``tokens()`` raised :class:`Unauthorized` (then its ``__cause__``)."""


class Unauthorized(ClientError, code="unauthorized"):
    """Raise it from ``tokens()`` when there will be no tokens (the user logged out, the refresh
    token was refused): the client ends with :class:`AuthenticationFailed`. Any other exception
    of ``tokens()`` (a network blip at the token endpoint) is retried with backoff."""


class ConnectionClosed(ClientError, code="connection_closed"):
    """The connection closed: ``close_code`` and ``reason`` say why (``None``: no close frame)."""

    def __init__(self, message: str, close_code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason


class CommandFailed(ClientError, code="command_failed"):
    """An ``error`` frame answered a command; ``error_code`` is the wire code (``forbidden``...)."""

    def __init__(self, error_code: str, detail: str) -> None:
        super().__init__(f"{error_code}: {detail}")
        self.error_code = error_code
        self.detail = detail


class ClientClosed(ConnectionClosed, code="client_closed"):
    """The application closed the client: a command waiting for a connection or a reply ends."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(message)

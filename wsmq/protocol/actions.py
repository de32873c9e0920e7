"""What a :class:`~wsmq.protocol.session.Session` asks its server layer to do.

The session is pure: it never touches a socket, Redis or the user store. Each of its methods
returns a list of these actions, which the server layer (:mod:`wsmq.gateway.connection`)
executes in order; the ``Do*`` ones report their outcome back through the session method
their docstring names, which may return more actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from wsmq.protocol.wire import Leave, Send, Subscribe

if TYPE_CHECKING:
    from wsmq.protocol.access import User

__all__ = [
    "Action",
    "Close",
    "DoAck",
    "DoAuthenticate",
    "DoAuthorize",
    "DoExtend",
    "DoLeave",
    "DoNack",
    "DoRefresh",
    "DoSend",
    "DoSubscribe",
    "DoUnsubscribe",
    "Reply",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``text`` to the client. ``error`` is the error code when it is an error frame."""

    text: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with ``code`` and ``reason`` (≤ 123 bytes). Always the last action."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class DoAuthenticate:
    """Verify the tokens; report with ``authenticated()`` or ``auth_failed()``."""

    x_token: str = field(repr=False)
    x_access_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DoRefresh:
    """Verify the JWT and the user's access in the store; report with ``refreshed()``,
    ``refresh_failed()`` or ``refresh_revoked()``."""

    x_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DoAuthorize:
    """Ask the host app's ``authorize`` hook whether ``user`` may ``action`` ``qname``; report
    with ``authorized(this action, allowed)``, which goes on with ``then`` or answers
    ``forbidden``. Only returned when the session was told a hook is configured."""

    user: User
    qname: str
    action: Literal["subscribe", "send", "leave"]
    then: Subscribe | Send | Leave


@dataclass(frozen=True, slots=True)
class DoSubscribe:
    """Start consuming ``qname`` (as ``device``: its inbox of the queue); report with
    ``subscribe_done()`` or ``subscribe_failed()``."""

    qname: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class DoLeave:
    """Remove ``device``'s inbox of ``qname`` (after a ``DoUnsubscribe`` of this connection's
    own subscription as that device, if any); report with ``leave_done()`` or
    ``leave_failed()``."""

    qname: str
    device: str


@dataclass(frozen=True, slots=True)
class DoUnsubscribe:
    """Stop consuming ``qname`` (release its in-flight messages). No report needed."""

    qname: str


@dataclass(frozen=True, slots=True)
class DoAck:
    """Delete the messages ``ids`` of ``qname`` (the ids of one ``/ack`` frame, in its order);
    report with ``acks_done()`` or ``acks_failed()``, which answer each id on its own."""

    qname: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DoNack:
    """Give back the messages ``ids`` of ``qname`` the subscription holds, visible again after
    ``delay`` seconds; report with ``nacks_done()`` or ``acks_failed()`` (an answer per id)."""

    qname: str
    ids: tuple[str, ...]
    delay: int


@dataclass(frozen=True, slots=True)
class DoExtend:
    """Keep the held messages ``ids`` of ``qname`` hidden ``seconds`` more from now; report
    with ``extends_done()`` or ``acks_failed()`` (an answer per id)."""

    qname: str
    ids: tuple[str, ...]
    seconds: int


@dataclass(frozen=True, slots=True)
class DoSend:
    """Publish ``message`` to ``qname``; report with ``send_done()`` or ``send_failed()``."""

    qname: str
    message: str = field(repr=False)


Action = (
    Reply
    | Close
    | DoAuthenticate
    | DoRefresh
    | DoAuthorize
    | DoSubscribe
    | DoUnsubscribe
    | DoLeave
    | DoAck
    | DoNack
    | DoExtend
    | DoSend
)

"""Who may do what on a connection: the user the session needs, the default rule, the hook.

Kept apart from the session so the server layer and host apps can name these types without the
state machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from wsmq.protocol.queue_sets import membership

__all__ = ["AuthorizeHook", "User", "default_authorize"]


class User(Protocol):
    """What the session needs from an authenticated user (``wsmq.auth.AuthenticatedUser`` fits).

    ``token_exp`` is the JWT's ``exp`` (epoch s); ``None`` means the connection never expires
    (e.g. a host app's cookie session).
    """

    @property
    def user_id(self) -> str: ...
    @property
    def queues(self) -> Collection[str]: ...
    @property
    def publish(self) -> Collection[str]: ...
    @property
    def token_exp(self) -> float | None: ...


#: A host app's ``authorize(user, qname, action) -> bool`` hook, sync or async (``action``:
#: ``"subscribe"`` or ``"send"``; ``"leave"`` for ``/leave`` when the hook opted in with
#: ``serve(authorize_leave=True)``, else ``/leave`` asks ``"subscribe"``, as before). The
#: session does not call it: it returns
#: :class:`~wsmq.protocol.actions.DoAuthorize` and the server layer runs it.
AuthorizeHook = Callable[[User, str, str], bool | Awaitable[bool]]


def default_authorize(user: User, qname: str, action: str) -> bool:
    """Own-queue rule: subscribe to (and leave a device of) your own id and ``queues``; send
    to ``publish``."""
    if action in ("subscribe", "leave"):
        return qname == user.user_id or qname in membership(user.queues)
    if action == "send":
        return qname in membership(user.publish)
    return False

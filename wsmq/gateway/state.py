"""What one gateway node shares between its connections (:class:`GatewayState`).

Its own module, below the handshake and the connection: connection-level modules import it,
and it sees a connection only as a :class:`NodeMember` (no import of the connection module).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from aiohttp import web

from wsmq.auth import Authenticator
from wsmq.engine.delivery import DeliveryEngine
from wsmq.gateway.deadlines import DeadlineTimer
from wsmq.gateway.health import HealthChecks
from wsmq.gateway.heartbeat import HeartbeatMember, HeartbeatSweeper
from wsmq.gateway.metrics import GatewayMetrics
from wsmq.protocol.access import AuthorizeHook
from wsmq.protocol.actions import Action
from wsmq.protocol.session import Session, SessionLimits
from wsmq.queue import QueueExists, Queues
from wsmq.settings import Settings

__all__ = ["STATE_KEY", "Authenticate", "GatewayState", "NodeMember"]

log = logging.getLogger("wsmq.gateway")

T = TypeVar("T")

#: ``authenticate(request) -> user | None``: a host app's own login replaces tokens. The user
#: may be a string id, a dict or an object (see :func:`wsmq.gateway.app.hook_user`).
Authenticate = Callable[[web.Request], Awaitable[object]]


class NodeMember(HeartbeatMember, Protocol):
    """A connection as the node sees it (:class:`~wsmq.gateway.connection.Connection`)."""

    #: The user this socket is registered under (revocations find it), once registered.
    user_id: str | None
    #: Its session (the store re-check reads the user's access revision there).
    session: Session

    def deadline_due(self) -> None:
        """The session's deadline passed (called by the node's :class:`DeadlineTimer`)."""

    async def revoke(self) -> None:
        """Close with 4403: the user's access was revoked."""

    async def execute(self, actions: list[Action]) -> None:
        """Execute session actions in order (the node's shutdown is one)."""

    def finish(self) -> None:
        """Close the transport gracefully (the node's shutdown: the close frame went out)."""

    def drop(self) -> None:
        """Abort the transport (the end of the node's shutdown: the close had its grace)."""


def _deadline_due(member: NodeMember) -> None:
    member.deadline_due()


@dataclass
class GatewayState:
    """Everything one gateway node shares between its connections."""

    settings: Settings
    queues: Queues
    engine: DeliveryEngine
    auth: Authenticator | None
    metrics: GatewayMetrics
    health: HealthChecks
    authorize: AuthorizeHook | None = None
    #: ``authorize`` is asked with action ``"leave"`` for ``/leave`` (else ``"subscribe"``).
    authorize_leave: bool = False
    authenticate: Authenticate | None = None
    connections: set[NodeMember] = field(default_factory=set)
    by_user: dict[str, set[NodeMember]] = field(default_factory=dict)
    tasks: set[asyncio.Task[object]] = field(default_factory=set)
    accepting: bool = True
    #: Subscribes being set up at once (queue check, engine subscribe); the others wait here,
    #: cheaply, instead of as deep coroutine chains queued on the Redis pool (memory in a
    #: reconnect storm).
    subscribe_gate: asyncio.Semaphore = field(init=False)
    #: Every connection's next session deadline (auth, token expiry) on one loop timer.
    deadlines: DeadlineTimer[NodeMember] = field(init=False)
    #: Pings silent sockets and drops dead peers, every socket of the node on one timer.
    heartbeat: HeartbeatSweeper = field(init=False)
    #: The limits of every session of this node (one object, not one per socket).
    session_limits: SessionLimits = field(init=False)

    def __post_init__(self) -> None:
        self.subscribe_gate = asyncio.Semaphore(max(8, self.settings.redis_pool_size // 4))
        self.deadlines = DeadlineTimer(_deadline_due)
        self.heartbeat = HeartbeatSweeper(self.settings.heartbeat, lambda: self.connections)
        self.session_limits = self.settings.session_limits()

    def spawn(self, coro: Coroutine[object, object, T]) -> asyncio.Task[T]:
        """Run ``coro`` as a task the gateway keeps a reference to (and awaits on close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def admit(self, conn: NodeMember, user_id: str | None) -> str | None:
        """Register an accepted socket, or say why not (``too_many_connections``,
        ``too_many_user_connections``).

        Synchronous on purpose: nothing can slip in between the limit checks and the
        registration, however many handshakes run concurrently.
        """
        limit = self.settings.max_connections
        if limit and len(self.connections) >= limit:
            return "too_many_connections"
        if user_id is not None and not self.admit_user(conn, user_id):
            return "too_many_user_connections"
        self.connections.add(conn)
        self.metrics.connections.inc()
        self.heartbeat.start()
        return None

    def admit_user(self, conn: NodeMember, user_id: str) -> bool:
        """Index ``conn`` under its user (revocations find it there); ``False`` when the user
        already has ``max_connections_per_user`` sockets on this node."""
        conns = self.by_user.get(user_id)
        limit = self.settings.max_connections_per_user
        if limit and conns is not None and len(conns) >= limit and conn not in conns:
            return False
        self.by_user.setdefault(user_id, set()).add(conn)
        conn.user_id = user_id
        return True

    def forget(self, conn: NodeMember) -> None:
        """Drop ``conn`` from every index (it is closing)."""
        if conn in self.connections:
            self.connections.discard(conn)
            self.metrics.connections.dec()
        if conn.user_id is not None:
            conns = self.by_user.get(conn.user_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.by_user[conn.user_id]

    async def revoke_user(self, user_id: str) -> int:
        """Close every socket of ``user_id`` on this node with 4403; returns how many."""
        conns = list(self.by_user.get(user_id, ()))
        await asyncio.gather(*(c.revoke() for c in conns), return_exceptions=True)
        return len(conns)

    async def ensure_queue(self, qname: str) -> str | None:
        """What ``qname`` is before a subscription: ``"queue"``, ``"group"``, or ``None`` (no
        such queue; it is created with the default vt, and is then a ``"queue"``, if
        ``create_queues``). One round trip for an existing queue.

        An exhausted Redis pool is waited out (backpressure), not answered ``unavailable``.
        """
        return await self.engine.health.retry_when_pool_busy(lambda: self._ensure_queue(qname))

    async def _ensure_queue(self, qname: str) -> str | None:
        kind = await self.queues.groups.kind(qname)
        if kind is not None:
            return kind
        if not self.settings.create_queues:
            return None
        try:
            await self.queues.create_queue(qname, vt=self.settings.default_vt)
        except QueueExists:  # created meanwhile, maybe as a group
            return await self.queues.groups.kind(qname)
        log.info("queue created on subscribe", extra={"event": "queue_create", "queue": qname})
        return "queue"


STATE_KEY = web.AppKey("wsmq_gateway", GatewayState)

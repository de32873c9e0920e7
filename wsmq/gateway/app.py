"""The gateway's shared state and its WebSocket endpoint (the handshake).

The handshake decides everything it can **before** ``ws.prepare()``: a rejected client gets a
plain HTTP answer (401/403/503 with a JSON body ``{"error": code, "message": ...}``) and never a
101. Tokens come from the ``x-token``/``x-access-token`` headers (the original's client), from
the query string only when ``allow_query_token`` is set, or from a first ``/auth`` frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wsmq._compat.aiohttp_release import release_http_state
from wsmq.gateway.connection import Connection
from wsmq.gateway.deadlines import DeadlineTimer
from wsmq.gateway.frames import require_masked_frames
from wsmq.gateway.health import HealthChecks
from wsmq.gateway.heartbeat import HeartbeatSweeper
from wsmq.gateway.metrics import GatewayMetrics
from wsmq.gateway.origin import origin_allowed
from wsmq.protocol import wire as p
from wsmq.protocol.access import AuthorizeHook
from wsmq.protocol.session import SessionLimits
from wsmq.settings import Settings

__all__ = [
    "STATE_KEY",
    "Authenticate",
    "AuthorizeHook",
    "GatewayState",
    "HookUser",
    "websocket_handler",
]

log = logging.getLogger("wsmq.gateway")

#: ``authenticate(request) -> user | None``: a host app's own login replaces tokens.
Authenticate = Callable[[web.Request], Awaitable[Any]]


@dataclass(frozen=True)
class HookUser:
    """A user returned by an ``authenticate`` hook (a plain id string is accepted too)."""

    user_id: str
    queues: Collection[str] = ()
    publish: Collection[str] = ()
    token_exp: float | None = None


def _as_user(value: Any) -> Any:
    if isinstance(value, str):
        return HookUser(value)
    if isinstance(value, dict):
        return HookUser(
            str(value["user_id"]),
            tuple(value.get("queues", ())),
            tuple(value.get("publish", ())),
            value.get("token_exp"),
        )
    if all(hasattr(value, a) for a in ("user_id", "queues", "publish", "token_exp")):
        return value
    return HookUser(
        str(value.user_id),
        tuple(getattr(value, "queues", ())),
        tuple(getattr(value, "publish", ())),
        getattr(value, "token_exp", None),
    )


@dataclass
class GatewayState:
    """Everything one gateway node shares between its connections."""

    settings: Settings
    queues: Any  # wsmq.queue.Queues
    engine: Any  # wsmq.engine.delivery.DeliveryEngine
    auth: Any | None  # wsmq.auth.Authenticator
    metrics: GatewayMetrics
    health: HealthChecks
    authorize: AuthorizeHook | None = None
    authenticate: Authenticate | None = None
    connections: set[Connection] = field(default_factory=set)
    by_user: dict[str, set[Connection]] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    accepting: bool = True
    #: Subscribes being set up at once (queue check, engine subscribe); the others wait here,
    #: cheaply, instead of as deep coroutine chains queued on the Redis pool: a reconnect
    #: storm of 10k sockets otherwise leaves ~10 KiB per socket of freed-but-resident memory.
    subscribe_gate: asyncio.Semaphore = field(init=False)
    #: Every connection's next session deadline (auth, token expiry) on one loop timer.
    deadlines: DeadlineTimer[Connection] = field(init=False)
    #: Pings silent sockets and drops dead peers, every socket of the node on one timer.
    heartbeat: HeartbeatSweeper = field(init=False)
    #: The limits of every session of this node (one object, not one per socket).
    session_limits: SessionLimits = field(init=False)

    def __post_init__(self) -> None:
        self.subscribe_gate = asyncio.Semaphore(max(8, self.settings.redis_pool_size // 4))
        self.deadlines = DeadlineTimer(Connection.deadline_due)
        self.heartbeat = HeartbeatSweeper(self.settings.heartbeat, lambda: self.connections)
        settings = self.settings
        self.session_limits = SessionLimits(
            max_subscriptions=settings.max_subscriptions,
            rate=settings.rate_limit,
            burst=float(settings.rate_burst),
            auth_timeout=settings.auth_deadline,
            expiring_warning=settings.expiry_warning,
            max_frame_size=settings.max_frame_size,
        )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the gateway keeps a reference to (and awaits on close)."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def admit(self, conn: Connection, user_id: str | None) -> str | None:
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

    def admit_user(self, conn: Connection, user_id: str) -> bool:
        """Index ``conn`` under its user (revocations find it there); ``False`` when the user
        already has ``max_connections_per_user`` sockets on this node."""
        conns = self.by_user.get(user_id)
        limit = self.settings.max_connections_per_user
        if limit and conns is not None and len(conns) >= limit and conn not in conns:
            return False
        self.by_user.setdefault(user_id, set()).add(conn)
        conn.user_id = user_id
        return True

    def forget(self, conn: Connection) -> None:
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

    async def ensure_queue(self, qname: str) -> bool:
        """True when ``qname`` exists (created with the default vt if ``create_queues``).

        An exhausted Redis pool is waited out (backpressure), not answered ``unavailable``.
        """
        health = getattr(self.engine, "health", None)
        if health is None:
            return await self._ensure_queue(qname)
        exists: bool = await health.retry_when_pool_busy(lambda: self._ensure_queue(qname))
        return exists

    async def _ensure_queue(self, qname: str) -> bool:
        from wsmq.queue import QueueExists

        if await self.queues.queue_exists(qname):
            return True
        if not self.settings.create_queues:
            return False
        with contextlib.suppress(QueueExists):
            await self.queues.create_queue(qname, vt=self.settings.default_vt)
            log.info("queue created on subscribe", extra={"event": "queue_create", "queue": qname})
        return True


STATE_KEY = web.AppKey("wsmq_gateway", GatewayState)


def _json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def _peer(request: web.Request) -> str:
    return request.remote or "?"


def _tokens_from(request: web.Request, allow_query: bool) -> tuple[str | None, str | None]:
    x_token = request.headers.get("x-token")
    x_access_token = request.headers.get("x-access-token")
    if allow_query and x_token is None and x_access_token is None:
        x_token = request.query.get("x-token")
        x_access_token = request.query.get("x-access-token")
    return x_token, x_access_token


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    """The WebSocket endpoint: handshake checks, then one :class:`Connection`."""
    state = request.app[STATE_KEY]
    accepted = await _accept(request, state)
    if not isinstance(accepted, Connection):
        return accepted
    # This frame lives as long as the socket: the handshake's locals (tokens, the reject
    # helper, a frame object made for the log record) stayed in `_accept`'s, now freed.
    await accepted.run()  # unregisters in its `finally`, whatever happens
    return accepted.ws


async def _accept(request: web.Request, state: GatewayState) -> Connection | web.Response:
    """Check the handshake and upgrade: the accepted connection, or the HTTP rejection."""
    settings = state.settings
    metrics = state.metrics
    peer = _peer(request)

    def reject(status: int, code: str, message: str) -> web.Response:
        metrics.handshakes.labels(result=code).inc()
        log.info(
            "handshake rejected",
            extra={"event": "handshake_reject", "peer": peer, "status": status, "error": code},
        )
        return _json_error(status, code, message)

    if not state.accepting:
        return reject(503, "shutting_down", "this node is shutting down; connect to another")
    if settings.max_connections and len(state.connections) >= settings.max_connections:
        return reject(503, "too_many_connections", "this node is full; connect to another")
    if not origin_allowed(
        request,
        settings.allowed_origins,
        public_url=settings.public_url,
        trusted_proxies=settings.trusted_proxies,
    ):
        return reject(403, "forbidden_origin", "this Origin may not open WebSockets here")
    ws = web.WebSocketResponse(
        protocols=p.SUBPROTOCOLS,
        # The node's HeartbeatSweeper pings and drops dead peers (no timer per socket); pings
        # and pongs reach the read loop, which answers pings itself.
        heartbeat=None,
        autoping=False,
        max_msg_size=settings.max_frame_size + 1,  # aiohttp refuses a payload equal to it
        compress=settings.compress,
    )
    ready = ws.can_prepare(request)
    if not ready.ok:
        return reject(400, "not_websocket", "this endpoint only accepts WebSocket upgrades")
    mode = p.mode_for_subprotocol(ready.protocol)

    user: Any | None = None
    if state.authenticate is not None:
        try:
            found = await state.authenticate(request)
            # A user without an id is a bug of the hook: answered like a failing hook.
            user = None if found is None else _as_user(found)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("authenticate hook failed", extra={"peer": peer})
            return reject(503, "unavailable", "authentication is unavailable")
        if user is None:
            return reject(401, "unauthenticated", "not logged in")
    else:
        x_token, x_access_token = _tokens_from(request, settings.allow_query_token)
        if x_token is not None or x_access_token is not None:
            if state.auth is None:
                return reject(401, "unauthenticated", "token authentication is not configured")
            from wsmq.auth import AuthError

            try:
                user = await state.auth.verify(x_token, x_access_token)
            except AuthError as exc:
                return reject(exc.status, exc.reason, exc.message)
            except Exception:
                log.exception("user store failed during handshake", extra={"peer": peer})
                return reject(503, "unavailable", "authentication is unavailable")

    conn = Connection(state, request, ws, mode, user, peer)
    refused = state.admit(conn, conn.session.user_id)
    if refused == "too_many_connections":
        return reject(503, refused, "this node is full; connect to another")
    if refused is not None:
        return reject(429, refused, "too many connections for this user")
    try:
        await ws.prepare(request)
    except BaseException:  # the peer left during the upgrade (or we are cancelled)
        state.forget(conn)
        raise
    release_http_state(request)  # ~2.5 KiB per socket aiohttp keeps for HTTP, unused from here
    require_masked_frames(request, ws)  # RFC 6455 §5.1: an unmasked client frame closes 1002
    metrics.handshakes.labels(result="ok" if user is not None else "deferred").inc()
    log.info(
        "connection open",
        extra={"event": "ws_open", "peer": peer, "user": conn.session.user_id,
               "mode": conn.mode_label},
    )  # fmt: skip
    return conn

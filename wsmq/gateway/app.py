"""The gateway's WebSocket endpoint (the handshake); the node's shared state is
:mod:`wsmq.gateway.state` (re-exported here).

The handshake decides everything it can **before** ``ws.prepare()``: a rejected client gets a
plain HTTP answer (401/403/503 with a JSON body ``{"error": code, "message": ...}``) and never a
101. Tokens come from the ``x-token``/``x-access-token`` headers (the original's client), from
the query string only when ``allow_query_token`` is set, or from a first ``/auth`` frame.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from wsmq._compat.aiohttp_release import release_http_state
from wsmq.auth import AuthError
from wsmq.gateway.connection import Connection
from wsmq.gateway.frames import require_masked_frames
from wsmq.gateway.log import ConnectionLog
from wsmq.gateway.origin import origin_allowed
from wsmq.gateway.state import STATE_KEY, Authenticate, GatewayState
from wsmq.protocol import wire as p
from wsmq.protocol.access import AuthorizeHook, User

__all__ = [
    "STATE_KEY",
    "Authenticate",
    "AuthorizeHook",
    "GatewayState",
    "HookUser",
    "websocket_handler",
]


@dataclass(frozen=True)
class HookUser:
    """A user returned by an ``authenticate`` hook (a plain id string is accepted too)."""

    user_id: str
    queues: Collection[str] = ()
    publish: Collection[str] = ()
    token_exp: float | None = None


def _as_user(value: object) -> User:
    """The session's user for what an ``authenticate`` hook returned (an id, a dict or an
    object with ``user_id``)."""
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
        return cast(User, value)
    return HookUser(
        str(cast(User, value).user_id),  # no user_id: a bug of the hook, raised
        tuple(getattr(value, "queues", ())),
        tuple(getattr(value, "publish", ())),
        getattr(value, "token_exp", None),
    )


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
    handshake_log = ConnectionLog(peer, None)

    def reject(status: int, code: str, message: str) -> web.Response:
        metrics.handshakes.labels(result=code).inc()
        handshake_log.info(
            "handshake rejected",
            extra={"event": "handshake_reject", "status": status, "error": code},
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

    user: User | None = None
    if state.authenticate is not None:
        try:
            found = await state.authenticate(request)
            # A user without an id is a bug of the hook: answered like a failing hook.
            user = None if found is None else _as_user(found)
        except web.HTTPException:
            raise
        except Exception:
            handshake_log.exception(
                "authenticate hook failed", extra={"event": "authenticate_hook_fail"}
            )
            return reject(503, "unavailable", "authentication is unavailable")
        if user is None:
            return reject(401, "unauthenticated", "not logged in")
    else:
        x_token, x_access_token = _tokens_from(request, settings.allow_query_token)
        if x_token is not None or x_access_token is not None:
            if state.auth is None:
                return reject(401, "unauthenticated", "token authentication is not configured")
            try:
                user = await state.auth.verify(x_token, x_access_token)
            except AuthError as exc:
                return reject(exc.status, exc.reason, exc.message)
            except Exception:
                handshake_log.exception(
                    "user store failed during handshake", extra={"event": "auth_fail"}
                )
                return reject(503, "unavailable", "authentication is unavailable")

    conn = Connection(state, request, ws, mode, user, peer)
    refused = state.admit(conn, conn.session.user_id)
    if refused == "too_many_connections":
        return reject(503, refused, "this node is full; connect to another")
    if refused is not None:
        return reject(429, refused, "too many connections for this user")
    try:
        await ws.prepare(request)
    except ConnectionError:
        # The peer gave up before the 101 was written (its own timeout, a flaky network, or
        # on purpose): an ordinary disconnect, counted and logged at debug. Raised, aiohttp
        # would log an ERROR traceback per abandoned handshake: log volume anyone can cause.
        state.forget(conn)
        metrics.handshakes.labels(result="aborted").inc()
        handshake_log.debug("peer left during the upgrade", extra={"event": "handshake_abort"})
        # aiohttp writes this response to the closed transport, sees the ConnectionError and
        # counts the request as reset, quietly.
        return web.Response(status=400)
    except BaseException:  # we are cancelled during the upgrade
        state.forget(conn)
        raise
    release_http_state(request)  # what aiohttp keeps per socket for HTTP, unused from here
    require_masked_frames(request, ws)  # RFC 6455 §5.1: an unmasked client frame closes 1002
    if user is not None:
        metrics.handshakes_ok.inc()
    else:
        metrics.handshakes.labels(result="deferred").inc()
    conn.log.info("connection open", extra={"event": "ws_open", "mode": conn.mode_label})
    return conn

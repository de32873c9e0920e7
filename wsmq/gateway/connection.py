"""One WebSocket connection: runs the pure :class:`~wsmq.protocol.session.Session` against
the socket, the delivery engine, the queues and the authenticator.

Every client frame goes through ``Session.handle`` and the returned actions are executed in
order here; nothing in this module decides protocol rules. Its queue side (subscriptions, acks
executed in groups with backpressure, sends, the release of a closed socket) is the
:class:`~wsmq.gateway.connection_queues.ConnectionQueues` it holds. An ``authorize`` hook
(sync or async) runs when the session asks for it with a ``DoAuthorize`` action. The release runs in
``finally`` in a shielded task, so a cancelled handler (a lost peer) still gives its messages
back at once. The node's :class:`~wsmq.gateway.heartbeat.HeartbeatSweeper` pings silent
sockets; the read loop answers the client's pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time

from aiohttp import WSMsgType, web

from wsmq.auth import AuthError
from wsmq.auth.authenticator import REVOKED_REASONS, access_revision
from wsmq.gateway.acks import AckPipeline
from wsmq.gateway.connection_queues import ConnectionQueues
from wsmq.gateway.deadlines import Entry
from wsmq.gateway.frames import FrameBatchWriter
from wsmq.gateway.log import ConnectionLog, log
from wsmq.gateway.state import GatewayState
from wsmq.gateway.subscriber import SEND_ERRORS as _SEND_ERRORS
from wsmq.gateway.subscriber import SocketSubscriber
from wsmq.protocol import wire as p
from wsmq.protocol.access import AuthorizeHook, User
from wsmq.protocol.actions import (
    Action,
    Close,
    DoAck,
    DoAuthenticate,
    DoAuthorize,
    DoExtend,
    DoLeave,
    DoNack,
    DoRefresh,
    DoSend,
    DoSubscribe,
    DoUnsubscribe,
    Reply,
)
from wsmq.protocol.session import Session

__all__ = ["AUTHORIZE_TIMEOUT", "Connection", "SocketSubscriber", "ask_authorize_hook"]

_CLOSE_INTERNAL_ERROR = 1011

#: Seconds an async ``authorize`` hook may take; a slower (or failing) hook denies.
AUTHORIZE_TIMEOUT = 5.0


class Connection:
    """The server side of one accepted WebSocket (its queue side: :class:`ConnectionQueues`)."""

    __slots__ = (
        "_deadline",
        "_deadline_at",
        "awaiting_frame",
        "close_code",
        "closing",
        "frames",
        "heartbeat_misses",
        "mode_label",
        "peer",
        "queues",
        "request",
        "session",
        "state",
        "user_id",
        "ws",
    )

    #: Minimum number of acks of one connection pending at once; the window raises it (acks
    #: executed together share one delete round trip, so a whole window costs one).
    MAX_CONCURRENT_ACKS = 32

    def __init__(
        self,
        state: GatewayState,
        request: web.Request,
        ws: web.WebSocketResponse,
        mode: p.Mode,
        user: User | None,
        peer: str,
    ) -> None:
        self.state = state
        self.request = request
        self.ws = ws
        self.peer = peer
        # A user hook (sync or async) decides before a frame reaches the session.
        self.session = Session(
            mode,
            now=time.time(),
            user=user,
            limits=state.session_limits,
            authorize_hook=state.authorize is not None,
            authorize_leave=state.authorize_leave,
        )
        self.mode_label = "v1" if mode is p.Mode.V1 else "legacy"
        self.closing = False
        self.close_code: int | None = None
        #: The user this socket is registered under (for revocations), once registered.
        self.user_id: str | None = None
        #: Writes batches of text frames with one socket write (replies, deliveries).
        self.frames = FrameBatchWriter(ws)
        #: Subscriptions, acks and sends (it sees this connection as a ``QueueOwner``).
        self.queues = ConnectionQueues(self, state)
        self._deadline: Entry | None = None  # the session's next deadline on the node's timer
        self._deadline_at: float | None = None
        #: The node's :class:`~wsmq.gateway.heartbeat.HeartbeatSweeper` reads and counts these.
        self.awaiting_frame = False
        self.heartbeat_misses = 0

    # --- lifecycle --------------------------------------------------------------------------

    def write_buffer_size(self) -> int:
        """Bytes queued in the transport, not yet taken by the kernel."""
        transport = self.request.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def run(self) -> None:
        """Read frames until the socket closes; then release everything (in ``finally``).

        The connection must already be registered (:meth:`GatewayState.admit`): whatever
        happens from here on — even a cancellation — ends in :meth:`GatewayState.forget`.
        """
        ws = self.ws
        try:
            if not self.state.accepting:  # shutdown started during the handshake
                await self.shutdown()
            # The read loop is inlined here rather than a coroutine of its own: one frame less
            # held by each idle socket.
            self._arm_deadline()
            while not ws.closed and not self.session.closed:
                # No receive timeout: the session's deadlines run on the node's DeadlineTimer,
                # the heartbeat on its HeartbeatSweeper (which any frame here proves alive).
                self.awaiting_frame = True
                msg = await ws.receive()
                self.awaiting_frame = False
                self.heartbeat_misses = 0
                kind = msg.type
                if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
                    if kind is WSMsgType.PING or kind is WSMsgType.PONG:
                        # autoping is off: pings and pongs reach us, and count as frames
                        await self._control_frame(kind, msg.data)
                        continue
                    if kind is WSMsgType.ERROR:
                        await self._close_for_error(ws.exception())
                    return  # CLOSE, CLOSING, CLOSED
                await self._handle_frame(msg.data)
                # Nothing of the last frame stays referenced while the next one is awaited.
                del msg
        except Exception:  # a bug of ours must cost this socket, never the node
            self.log.exception("connection failed", extra={"event": "ws_fail"})
            with contextlib.suppress(Exception):
                await self.close(_CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            self.closing = True
            self.state.deadlines.cancel(self._deadline)
            self._deadline = None
            self.state.forget(self)
            # Shielded task: a second cancellation (lost peer, shutdown) must not stop
            # this socket's unacked messages from being released at once.
            release = self.state.spawn(self.queues.release_all())
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(release)

    async def _handle_frame(self, data: str | bytes) -> None:
        """One client frame: parse it, let the session decide, execute what it decided."""
        try:
            command: p.Command | p.ProtocolError = p.parse_frame(
                data, max_size=self.session.limits.max_frame_size
            )
        except p.ProtocolError as exc:
            command = exc
        actions = self.session.handle(command, time.time())
        await self.execute(actions)
        self._arm_deadline()

    async def _close_for_error(self, exc: BaseException | None) -> None:
        # aiohttp reports a protocol violation (oversized frame: 1009, bad UTF-8: 1007) as an
        # error and has usually sent the close frame already; this covers the other cases.
        if self.closing:  # already closing (or dropped by the heartbeat): nothing to add
            return
        code = getattr(exc, "code", None)
        code = code if isinstance(code, int) and 1000 <= code < 5000 else p.CLOSE_POLICY
        self.log.info(
            "socket error", extra={"event": "ws_error", "error": type(exc).__name__, "code": code}
        )
        self.state.metrics.closes.labels(code=str(code)).inc()
        with contextlib.suppress(TimeoutError, *_SEND_ERRORS):
            async with asyncio.timeout(5.0):
                await self.ws.close(code=code, message=b"protocol error")

    # --- heartbeat (HeartbeatMember) -------------------------------------------------------

    @property
    def send_stalled(self) -> bool:
        """The transport is paused: more is buffered than its high-water mark (public asyncio
        ``WriteTransport`` API), so the peer has not been taking what we write."""
        transport = self.request.transport
        if transport is None:
            return False
        size = transport.get_write_buffer_size()
        return size > 0 and size > transport.get_write_buffer_limits()[1]

    def send_ping(self) -> None:
        if self.closing:
            return
        if not self.frames.ping():
            self.state.spawn(self._ping_slow())

    async def _ping_slow(self) -> None:
        with contextlib.suppress(*_SEND_ERRORS):
            await self.ws.ping()

    async def _control_frame(self, kind: WSMsgType, data: bytes) -> None:
        over_limit = self.session.control_frame(time.time())
        if over_limit:
            await self.execute(over_limit)
        elif kind is WSMsgType.PING:
            await self._pong(data)

    async def _pong(self, data: bytes) -> None:
        with contextlib.suppress(*_SEND_ERRORS):
            await self.ws.pong(data)

    def heartbeat_lost(self) -> None:
        """The peer left a ping unanswered: drop the socket at once.

        Aborted, not closed: a dead peer or a black hole takes no close frame, and what is
        buffered for it would never drain. The read loop then ends and releases as usual.
        """
        if self.closing:
            return
        self.closing = True
        self.close_code = p.CLOSE_ABNORMAL
        self.state.metrics.closes.labels(code=str(p.CLOSE_ABNORMAL)).inc()
        self.log.info(
            "peer did not answer the heartbeat; dropped", extra={"event": "ws_heartbeat_timeout"}
        )
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def finish(self) -> None:
        """The close went out in the node's shutdown: close the transport gracefully (what is
        buffered, the close frame, is flushed before the FIN). An abort here would send a RST
        that can reach the peer before it read the close frame: it would see 1006, not 1001."""
        transport = self.request.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def drop(self) -> None:
        """The node's shutdown gave the close its grace: abort the transport, quietly.

        What is still buffered (the close frame, for a peer that stopped reading) is lost; the
        read loop and a ``ws.close`` waiting for the peer's reply both end at once.
        """
        transport = self.request.transport
        if transport is not None:  # even when closing: it may still be flushing to a stuck peer
            transport.abort()

    # --- deadlines --------------------------------------------------------------------------

    def _arm_deadline(self) -> None:
        """Keep the node's timer in step with the session's next deadline (after each frame)."""
        when = None if self.closing else self.session.next_deadline()
        if when == self._deadline_at and (when is None) == (self._deadline is None):
            return
        timer = self.state.deadlines
        timer.cancel(self._deadline)
        self._deadline = timer.schedule(when, self) if when is not None else None
        self._deadline_at = when

    def deadline_due(self) -> None:
        """The session's deadline passed (called by the node's :class:`DeadlineTimer`).

        Runs outside the read loop, like a revocation: what the tick decides (close with
        4408/4403, the v1 ``expiring`` warning) is executed in a task of its own.
        """
        self._deadline = None
        self._deadline_at = None
        if self.closing:
            return
        actions = self.session.tick(time.time())
        if actions:
            self.state.spawn(self.execute(actions))
        self._arm_deadline()

    # --- actions ----------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        """Execute session actions in order (results may produce more actions).

        Consecutive replies (e.g. a group of ``acked``) go out with one socket write.
        """
        queue = list(actions)
        while queue:
            first = queue[0]
            if isinstance(first, Reply) and len(queue) > 1 and isinstance(queue[1], Reply):
                replies: list[Reply] = []
                for action in queue:
                    if not isinstance(action, Reply):
                        break
                    replies.append(action)
                del queue[: len(replies)]
                await self._send_replies(replies)
                continue
            del queue[0]
            more = await self._execute_one(first)
            if more:
                queue[0:0] = more

    async def _execute_one(self, action: Action) -> list[Action]:
        match action:
            case Reply(text, error):
                if error is not None:
                    self.state.metrics.frames_rejected.labels(code=error).inc()
                await self._send(text)
            case DoAck():
                await self._put_ack(action)
            case DoNack() | DoExtend():
                # After the acks read before it: a nack never overtakes an ack of the same id.
                if self.queues.acks is not None:
                    await self.queues.acks.drained()
                return await self.queues.nack_or_extend(action)
            case Close(code, reason):
                await self.close(code, reason)
            case DoAuthenticate(x_token, x_access_token):
                return await self._authenticate(x_token, x_access_token)
            case DoRefresh(x_token):
                return await self._refresh(x_token)
            case DoSubscribe(qname, device):
                return await self.queues.subscribe(qname, device)
            case DoUnsubscribe(qname):
                await self.queues.unsubscribe(qname)
            case DoLeave(qname, device):
                return await self.queues.leave(qname, device)
            case DoSend(qname, message):
                return await self.queues.send_message(qname, message)
            case DoAuthorize():
                hook = self.state.authorize
                allowed = hook is not None and await ask_authorize_hook(hook, action)
                return self.session.authorized(action, allowed)
        return []

    async def _put_ack(self, ack: DoAck) -> None:
        # Queued, not awaited: the next frame is read without waiting a Redis round trip.
        # Bounded: with the pipeline full the read loop waits here.
        acks = self.queues.acks
        if acks is None:
            acks = self.queues.acks = AckPipeline(
                self.queues,
                max(self.MAX_CONCURRENT_ACKS, self.state.settings.window),
                self.state.spawn,
            )
        await acks.put(ack)

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(*_SEND_ERRORS):
            await self.ws.send_str(text)

    async def _send_replies(self, replies: list[Reply]) -> None:
        rejected = self.state.metrics.frames_rejected
        for reply in replies:
            if reply.error is not None:
                rejected.labels(code=reply.error).inc()
        if self.ws.closed:
            return
        with contextlib.suppress(*_SEND_ERRORS):
            await self.frames.send_texts([r.text.encode() for r in replies])

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` (idempotent)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.state.metrics.closes.labels(code=str(code)).inc()
        self.log.info(
            "closing connection", extra={"event": "ws_close", "code": code, "reason": reason}
        )
        with contextlib.suppress(TimeoutError, *_SEND_ERRORS):
            async with asyncio.timeout(5.0):
                await self.ws.close(code=code, message=reason.encode())

    async def _authenticate(self, x_token: str, x_access_token: str) -> list[Action]:
        auth = self.state.auth
        if auth is None:
            return self.session.auth_failed("token authentication is not configured")
        try:
            user = await auth.verify(x_token, x_access_token)
        except AuthError as exc:
            self.state.metrics.handshakes.labels(result=f"auth_{exc.reason}").inc()
            return self.session.auth_failed(exc.message)
        except Exception:  # the user store is down: tell the client, keep the node alive
            self.log.exception("user store failed during /auth", extra={"event": "auth_fail"})
            return self.session.auth_failed("authentication unavailable")
        if self.closing:  # the socket died while the store answered
            return []
        if not self.state.admit_user(self, user.user_id):
            self.state.metrics.handshakes.labels(result="too_many_user_connections").inc()
            return [Close(p.CLOSE_RATE_LIMITED, "too many connections for this user")]
        actions = self.session.authenticated(user, time.time())
        self.state.metrics.handshakes.labels(result="ok_first_message").inc()
        return actions

    async def _refresh(self, x_token: str) -> list[Action]:
        auth = self.state.auth
        if auth is None:
            return self.session.refresh_failed("token authentication is not configured")

        try:
            claims = await auth.check_jwt(x_token)
            if claims.user_id == self.session.user_id:
                # A valid JWT outlives a disable or a logout nobody broadcast: the store decides.
                await auth.check_access(claims.user_id, access_revision(self.session.user))
        except AuthError as exc:
            if exc.reason in REVOKED_REASONS:
                return self.session.refresh_revoked(exc.message)
            return self.session.refresh_failed(exc.message)
        return self.session.refreshed(claims.user_id, float(claims.exp), time.time())

    # --- server events ----------------------------------------------------------------------

    async def revoke(self) -> None:
        """The user's access was revoked on some node: close with 4403."""
        await self.execute(self.session.revoked())

    async def shutdown(self) -> None:
        """The node is stopping: close with 1001."""
        await self.execute(self.session.shutdown())

    @property
    def log(self) -> ConnectionLog:
        """The gateway logger with this connection's ``peer`` and ``user`` in every record."""
        return ConnectionLog(self.peer, self.session.user_id)


async def ask_authorize_hook(hook: AuthorizeHook, request: DoAuthorize) -> bool:
    """The host app's ``authorize`` hook on ``request``, awaited if it returns an awaitable
    (at most :data:`AUTHORIZE_TIMEOUT`). Raising or timing out denies, logged: a broken hook
    never opens queues up, nor costs the connection."""
    try:
        result = hook(request.user, request.qname, request.action)
        if inspect.isawaitable(result):
            async with asyncio.timeout(AUTHORIZE_TIMEOUT):
                result = await result
        return bool(result)
    except Exception:
        log.exception(
            "authorize hook failed",
            extra={"event": "authorize_fail", "queue": request.qname, "action": request.action},
        )
        return False

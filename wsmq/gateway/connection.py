"""One WebSocket connection: runs the pure :class:`~wsmq.gateway.session.Session` against
the socket, the delivery engine, the queues and the authenticator.

Every client frame goes through ``Session.receive`` and the returned actions are executed in
order here; nothing in this module decides protocol rules. Each subscription is a
:class:`SocketSubscriber`, the delivery engine's view of this socket: how much more it may
take (``window()``) and how to write a message (``deliver()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from redis.exceptions import RedisError

from wsmq.gateway import protocol as p
from wsmq.gateway.delivery import EngineStopped
from wsmq.gateway.session import (
    Action,
    Close,
    DoAck,
    DoAuthenticate,
    DoRefresh,
    DoSend,
    DoSubscribe,
    DoUnsubscribe,
    Reply,
    Session,
    SessionLimits,
)
from wsmq.queue import QueueError

if TYPE_CHECKING:
    from wsmq.gateway.app import GatewayState
    from wsmq.queue import Message

__all__ = ["Connection", "SocketSubscriber"]

log = logging.getLogger("wsmq.gateway")

# A write to a socket that is closing: the peer is gone, which is not an error of ours.
_SEND_ERRORS = (ConnectionError, RuntimeError)


class SocketSubscriber:
    """The delivery engine's handle on one subscription of one socket.

    ``window()`` is how many more messages this subscription may take from Redis right now:
    the per-subscription window minus what is in flight (unacked in ``wsmq.v1``, being written
    in legacy mode), and zero while the socket's write buffer is over its limit — so a client
    that stops reading costs Redis space, not server memory. When the buffer drains again the
    engine is woken (``Subscription.wake``).
    """

    #: How often a backed-up socket is checked for having drained (seconds).
    DRAIN_CHECK = 0.05

    def __init__(self, conn: Connection, qname: str) -> None:
        self.conn = conn
        self.qname = qname
        self.ack_mode = conn.session.v1
        self.handle: Any | None = None  # the engine's Subscription, once subscribed
        self.writing = 0
        self.closed = False
        self.active = False  # set once the `subscribed` reply is written
        self._drain_watch: asyncio.Task[None] | None = None

    def window(self) -> int:
        """Messages this subscription can take now (0 when closed or the socket is backed up)."""
        if self.closed or not self.active or self.conn.closing:
            return 0
        settings = self.conn.state.settings
        if self.conn.write_buffer_size() >= settings.write_buffer_limit:
            self._watch_drain()
            return 0
        unacked = self.handle.unacked if self.handle is not None else 0
        return max(0, settings.window - unacked - self.writing)

    def _watch_drain(self) -> None:
        if self._drain_watch is None or self._drain_watch.done():
            self._drain_watch = self.conn.state.spawn(self._wait_drained())

    async def _wait_drained(self) -> None:
        limit = self.conn.state.settings.write_buffer_limit
        while not (self.closed or self.conn.closing):
            if self.conn.write_buffer_size() < limit:
                if self.handle is not None:
                    self.handle.wake()
                return
            await asyncio.sleep(self.DRAIN_CHECK)

    async def deliver(self, msg: Message) -> bool:
        """Write ``msg`` to the socket; False when the socket is gone (the engine releases it)."""
        if self.closed or self.conn.closing:
            return False
        text = p.encode_message(
            self.conn.session.mode, self.qname, msg.id, msg.rc, msg.sent, msg.message
        )
        self.writing += 1
        try:
            await self.conn.ws.send_str(text)
        except _SEND_ERRORS:
            return False
        finally:
            self.writing -= 1
        self.conn.state.metrics.observe_delivery(
            self.conn.mode_label, now_ms=time.time() * 1000.0, sent_ms=float(msg.sent)
        )
        return True


class Connection:
    """The server side of one accepted WebSocket."""

    #: Acks of one connection being executed at once (each is one Redis round trip).
    MAX_CONCURRENT_ACKS = 32

    def __init__(
        self,
        state: GatewayState,
        request: web.Request,
        ws: web.WebSocketResponse,
        mode: p.Mode,
        user: Any | None,
        peer: str,
    ) -> None:
        self.state = state
        self.request = request
        self.ws = ws
        self.peer = peer
        settings = state.settings
        limits = SessionLimits(
            max_subscriptions=settings.max_subscriptions,
            rate=settings.rate_limit,
            burst=float(settings.rate_burst),
            auth_timeout=settings.auth_deadline,
            max_frame_size=settings.max_frame_size,
        )
        self.session = Session(
            mode, now=time.time(), user=user, limits=limits, authorize=state.authorize
        )
        self.mode_label = "v1" if mode is p.Mode.V1 else "legacy"
        self.subs: dict[str, tuple[Any, SocketSubscriber]] = {}
        self.closing = False
        self.close_code: int | None = None
        self._registered_user: str | None = None
        self._acks = asyncio.Semaphore(self.MAX_CONCURRENT_ACKS)

    # --- lifecycle --------------------------------------------------------------------------

    def write_buffer_size(self) -> int:
        """Bytes queued in the transport, not yet taken by the kernel."""
        transport = self.request.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    async def run(self) -> None:
        """Read frames until the socket closes; then release everything (in ``finally``)."""
        self._register_user()
        try:
            await self._loop()
        finally:
            self.closing = True
            self.state.forget(self)
            # Shielded task: a second cancellation (heartbeat timeout, shutdown) must not stop
            # this socket's unacked messages from being released at once.
            release = self.state.spawn(self._release_all())
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(release)

    async def _loop(self) -> None:
        ws = self.ws
        while not ws.closed and not self.session.closed:
            deadline = self.session.next_deadline()
            timeout: float | None = None
            if deadline is not None:
                timeout = deadline - time.time()
                if timeout <= 0:
                    await self.execute(self.session.tick(time.time()))
                    continue
            try:
                msg = await ws.receive(timeout=timeout)
            except TimeoutError:
                await self.execute(self.session.tick(time.time()))
                continue
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                actions = self.session.receive(msg.data, time.time())
                await self.execute(actions)
            elif msg.type is WSMsgType.ERROR:
                await self._close_for_error(ws.exception())
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    async def _close_for_error(self, exc: BaseException | None) -> None:
        # aiohttp reports a protocol violation (oversized frame: 1009, bad UTF-8: 1007) as an
        # error and has usually sent the close frame already; this covers the other cases.
        code = getattr(exc, "code", None)
        code = code if isinstance(code, int) and 1000 <= code < 5000 else p.CLOSE_POLICY
        log.info(
            "socket error",
            extra={"event": "ws_error", "peer": self.peer, "error": type(exc).__name__,
                   "code": code},
        )  # fmt: skip
        self.state.metrics.closes.labels(code=str(code)).inc()
        with contextlib.suppress(TimeoutError, *_SEND_ERRORS):
            async with asyncio.timeout(5.0):
                await self.ws.close(code=code, message=b"protocol error")

    # --- actions ----------------------------------------------------------------------------

    async def execute(self, actions: list[Action]) -> None:
        """Execute session actions in order (results may produce more actions)."""
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            more = await self._execute_one(action)
            if more:
                queue[0:0] = more

    async def _execute_one(self, action: Action) -> list[Action]:
        match action:
            case Reply(text, error):
                if error is not None:
                    self.state.metrics.frames_rejected.labels(code=error).inc()
                await self._send(text)
            case Close(code, reason):
                await self.close(code, reason)
            case DoAuthenticate(x_token, x_access_token):
                return await self._authenticate(x_token, x_access_token)
            case DoRefresh(x_token):
                return await self._refresh(x_token)
            case DoSubscribe(qname):
                return await self._subscribe(qname)
            case DoUnsubscribe(qname):
                await self._unsubscribe(qname)
            case DoAck(qname, msg_id):
                # Acks are independent deletes: run them concurrently so the next frame is read
                # without waiting a Redis round trip per ack (bounded per connection).
                self.state.spawn(self._ack_in_background(qname, msg_id))
            case DoSend(qname, message):
                return await self._send_message(qname, message)
        return []

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(*_SEND_ERRORS):
            await self.ws.send_str(text)

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` (idempotent)."""
        if self.closing:
            return
        self.closing = True
        self.close_code = code
        self.state.metrics.closes.labels(code=str(code)).inc()
        log.info(
            "closing connection",
            extra={"event": "ws_close", "peer": self.peer, "user": self.session.user_id,
                   "code": code, "reason": reason},
        )  # fmt: skip
        with contextlib.suppress(TimeoutError, *_SEND_ERRORS):
            async with asyncio.timeout(5.0):
                await self.ws.close(code=code, message=reason.encode())

    async def _authenticate(self, x_token: str, x_access_token: str) -> list[Action]:
        auth = self.state.auth
        if auth is None:
            return self.session.auth_failed("token authentication is not configured")
        from wsmq.auth import AuthError

        try:
            user = await auth.verify(x_token, x_access_token)
        except AuthError as exc:
            self.state.metrics.handshakes.labels(result=f"auth_{exc.reason}").inc()
            return self.session.auth_failed(exc.message)
        except Exception:  # the user store is down: tell the client, keep the node alive
            log.exception("user store failed during /auth", extra={"peer": self.peer})
            return self.session.auth_failed("authentication unavailable")
        actions = self.session.authenticated(user, time.time())
        self._register_user()
        self.state.metrics.handshakes.labels(result="ok_first_message").inc()
        return actions

    async def _refresh(self, x_token: str) -> list[Action]:
        auth = self.state.auth
        if auth is None:
            return self.session.refresh_failed("token authentication is not configured")
        from wsmq.auth import AuthError

        try:
            claims = auth.verify_jwt(x_token)
        except AuthError as exc:
            return self.session.refresh_failed(exc.message)
        return self.session.refreshed(claims.user_id, float(claims.exp), time.time())

    async def _subscribe(self, qname: str) -> list[Action]:
        state = self.state
        try:
            if not await state.ensure_queue(qname):
                return self.session.subscribe_failed(
                    qname, p.ErrorCode.QUEUE_NOT_FOUND, f"queue {qname} does not exist"
                )
            sub = SocketSubscriber(self, qname)
            handle = await state.engine.subscribe(qname, sub)
            sub.handle = handle
        except EngineStopped:
            return self.session.subscribe_failed(
                qname, p.ErrorCode.UNAVAILABLE, "this node is shutting down"
            )
        except (RedisError, OSError):
            state.metrics.redis_errors.inc()
            return self.session.subscribe_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        except QueueError as exc:
            return self.session.subscribe_failed(qname, p.ErrorCode.INTERNAL_ERROR, str(exc))
        if self.closing:  # the socket died while we were subscribing
            sub.closed = True
            await state.engine.unsubscribe(handle)
            return []
        self.subs[qname] = (handle, sub)
        state.metrics.subscriptions.inc()
        # The `subscribed` reply goes out before the first message of the queue does.
        await self.execute(self.session.subscribe_done(qname))
        sub.active = True
        handle.wake()
        return []

    async def _unsubscribe(self, qname: str) -> None:
        entry = self.subs.pop(qname, None)
        if entry is None:
            return
        handle, sub = entry
        sub.closed = True
        self.state.metrics.subscriptions.dec()
        try:
            await self.state.engine.unsubscribe(handle)
        except (RedisError, OSError):
            self.state.metrics.redis_errors.inc()
        except QueueError as exc:  # e.g. the queue was deleted meanwhile: nothing to release
            log.info("unsubscribe: %s", exc, extra={"event": "unsubscribe", "queue": qname})

    async def _ack_in_background(self, qname: str, msg_id: str) -> None:
        async with self._acks:
            await self.execute(await self._ack(qname, msg_id))

    async def _ack(self, qname: str, msg_id: str) -> list[Action]:
        entry = self.subs.get(qname)
        if entry is None:
            return self.session.ack_failed(
                qname, msg_id, p.ErrorCode.NOT_SUBSCRIBED, "not subscribed"
            )
        handle, _sub = entry
        try:
            deleted = await self.state.engine.ack(handle, msg_id)
        except (RedisError, OSError):
            self.state.metrics.redis_errors.inc()
            return self.session.ack_failed(
                qname, msg_id, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        if deleted:
            self.state.metrics.messages_acked.inc()
        return self.session.ack_done(qname, msg_id, deleted)

    async def _send_message(self, qname: str, message: str) -> list[Action]:
        try:
            msg_id = await self.state.queues.send_message(qname, message)
        except QueueError as exc:
            code = {
                "queueNotFound": p.ErrorCode.QUEUE_NOT_FOUND,
                "messageTooLong": p.ErrorCode.MESSAGE_TOO_LONG,
            }.get(getattr(exc, "name", ""), p.ErrorCode.BAD_FRAME)
            return self.session.send_failed(qname, code, str(exc))
        except (RedisError, OSError):
            self.state.metrics.redis_errors.inc()
            return self.session.send_failed(
                qname, p.ErrorCode.UNAVAILABLE, "queue service unavailable, retry later"
            )
        self.state.metrics.messages_sent.inc()
        return self.session.send_done(qname, msg_id)

    # --- server events ----------------------------------------------------------------------

    async def revoke(self) -> None:
        """The user's access was revoked on some node: close with 4403."""
        await self.execute(self.session.revoked())

    async def shutdown(self) -> None:
        """The node is stopping: close with 1001."""
        await self.execute(self.session.shutdown())

    def _register_user(self) -> None:
        user_id = self.session.user_id
        if user_id is not None and self._registered_user is None:
            self._registered_user = user_id
            self.state.register_user(self, user_id)

    @property
    def user_id(self) -> str | None:
        """The user this socket is registered under (for revocations)."""
        return self._registered_user

    async def _release_all(self) -> None:
        # Runs in `finally`, possibly in a cancelled task (heartbeat timeout): unsubscribing
        # releases this socket's unacked messages at once (vt 0) instead of after vt.
        for qname in list(self.subs):
            self.subs[qname][1].closed = True
        for qname in list(self.subs):
            try:
                async with asyncio.timeout(5.0):
                    await self._unsubscribe(qname)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("releasing a subscription timed out", extra={"queue": qname})
            except Exception:  # never let cleanup of one queue skip the others
                log.exception("releasing a subscription failed", extra={"queue": qname})

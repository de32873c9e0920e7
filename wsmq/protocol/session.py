"""Per-connection protocol state machine, pure and I/O-free.

The server layer owns the socket and the clock; for every event it calls one method of
:class:`Session` and executes the returned actions **in order**::

    session = Session(mode, user=header_user_or_None, now=time.time(), limits=limits)
    for action in session.receive(frame_text, time.time()):
        match action:
            case Reply(text):
                await ws.send_str(text)
            case Close(code, reason):
                await ws.close(code=code, message=reason.encode())
            case DoAuthenticate(x_token, x_access_token):
                ...  # auth.verify → session.authenticated(user, now) / auth_failed(reason)
            case DoRefresh(x_token):
                ...  # auth.verify_jwt + auth.check_access → session.refreshed(uid, exp, now)
                     # / refresh_failed() / refresh_revoked()
            case DoAuthorize(user, qname, verb):  # only with Session(authorize_hook=True)
                ...  # hook(user, qname, verb), awaited if async → session.authorized(action, ok)
            case DoSubscribe(qname):
                ...  # engine.subscribe → session.subscribe_done(q) / subscribe_failed(...)
            case DoUnsubscribe(qname):
                ...  # engine.unsubscribe (no callback)
            case DoAck(qname, ids):
                ...  # engine.ack_many → session.acks_done(q, ids, deleted) / acks_failed(...)
            case DoSend(qname, body):
                ...  # queues.send_message → session.send_done(q, id) / send_failed(...)

Actions returned by the callbacks are executed the same way. The server also calls
:meth:`Session.tick` at :meth:`Session.next_deadline` (auth deadline, token expiry, v1
``expiring`` warning), :meth:`Session.revoked` when the user's access is revoked and
:meth:`Session.shutdown` on SIGTERM. ``now`` is wall-clock epoch seconds (``time.time()``)
because token expiry is an epoch time. Deliveries are framed by
:func:`wsmq.protocol.server_frames.encode_message` with ``session.mode``.
No method raises on client input; everything becomes actions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from wsmq.protocol import wire as p
from wsmq.protocol.access import User, default_authorize
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
from wsmq.protocol.ratelimit import TokenBucket
from wsmq.protocol.server_frames import (
    encode_acked,
    encode_authenticated,
    encode_error,
    encode_expiring,
    encode_extended,
    encode_left,
    encode_nacked,
    encode_refreshed,
    encode_sent,
    encode_subscribed,
    encode_unsubscribed,
)

__all__ = ["Session", "SessionLimits", "State"]

log = logging.getLogger("wsmq.protocol.session")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-connection limits. ``rate=None`` disables the rate limit."""

    max_subscriptions: int = 32
    rate: float | None = 100.0  # frames per second, sustained
    burst: float = 200.0  # frames allowed at once
    auth_timeout: float = 5.0  # seconds to complete first-message /auth
    expiring_warning: float = 60.0  # v1: send `expiring` this long before the token's exp
    max_frame_size: int = p.DEFAULT_MAX_FRAME_SIZE  # UTF-8 bytes
    max_pending: int = 32  # frames buffered while /auth is being verified
    max_extend: int = 43_200  # longest /extend (seconds)


class State(Enum):
    """Connection state."""

    AWAITING_AUTH = "awaiting_auth"  # no /auth yet
    AUTHENTICATING = "authenticating"  # /auth received, verification in progress
    OPEN = "open"
    CLOSED = "closed"


Pending = p.Command | p.ProtocolError
#: Commands that give held messages up (v1: free of the rate limit unless they fail).
_GIVE_UP_VERBS = (p.Ack, p.AckMany, p.Nack)


class Session:
    """The protocol state of one connection.

    Args:
        mode: framing of server frames (legacy or ``wsmq.v1``).
        now: the current time (epoch s); starts the auth deadline and the rate limiter.
        user: the user authenticated from handshake headers, or ``None`` to require
            ``/auth <x-token> <x-access-token>`` as the first frame.
        limits: per-connection limits.
        authorize_hook: a host app's hook decides ``/subscribe``, ``/send`` and ``/leave``: the
            session returns :class:`DoAuthorize` and goes on in :meth:`authorized`. Without one,
            :func:`default_authorize` decides on the spot.
        authorize_leave: the hook is asked with action ``"leave"`` for ``/leave``; else with
            ``"subscribe"`` (hooks written before ``"leave"`` existed may deny actions they do
            not know: they keep deciding ``/leave`` as a subscription).
    """

    __slots__ = (
        "_bucket",
        "_hooked",
        "_leave_action",
        "_now",
        "_pending",
        "_subscribed",
        "_subscribing",
        "_warn_at",
        "auth_deadline",
        "limits",
        "mode",
        "state",
        "token_exp",
        "user",
    )

    def __init__(
        self,
        mode: p.Mode,
        *,
        now: float,
        user: User | None = None,
        limits: SessionLimits | None = None,
        authorize_hook: bool = False,
        authorize_leave: bool = False,
    ) -> None:
        self.mode = mode
        self.limits = limits or SessionLimits()
        self._hooked = authorize_hook
        self._leave_action: Literal["subscribe", "leave"] = (
            "leave" if authorize_leave else "subscribe"
        )
        self.user: User | None = user
        self.token_exp: float | None = user.token_exp if user is not None else None
        self.state = State.OPEN if user is not None else State.AWAITING_AUTH
        self.auth_deadline: float | None = None if user else now + self.limits.auth_timeout
        # Ordered sets as dicts: an empty dict is 64 bytes, an empty set 216 (x 10k sockets).
        # queue -> the device it is subscribed as (None: a plain subscription)
        self._subscribed: dict[str, str | None] = {}
        self._subscribing: dict[str, str | None] = {}
        # Frames received while /auth is verified, handled in order once it is (and, with a
        # hook, one at a time: the rest waits behind a DoAuthorize until authorized()).
        self._pending: list[Pending] = []
        self._warn_at: float | None = None  # when the v1 `expiring` goes out (None: not armed)
        self._arm_warning(now)
        self._now = now
        self._bucket = (
            TokenBucket(self.limits.rate, self.limits.burst, now) if self.limits.rate else None
        )

    # --- read-only views --------------------------------------------------------------------

    @property
    def user_id(self) -> str | None:
        """The authenticated user's id, or ``None`` before authentication."""
        return self.user.user_id if self.user is not None else None

    @property
    def subscriptions(self) -> frozenset[str]:
        """Queues subscribed or being subscribed."""
        return frozenset((*self._subscribed, *self._subscribing))

    @property
    def closed(self) -> bool:
        """True once a :class:`Close` action has been returned."""
        return self.state is State.CLOSED

    @property
    def v1(self) -> bool:
        """True in ``wsmq.v1`` mode (success replies, acks, ``expiring`` warnings)."""
        return self.mode is p.Mode.V1

    # --- client input -----------------------------------------------------------------------

    def receive(self, frame: str | bytes, now: float) -> list[Action]:
        """Handle one raw client frame (text, or bytes for a binary frame)."""
        if self.state is State.CLOSED:
            return []
        try:
            command: Pending = p.parse_frame(frame, max_size=self.limits.max_frame_size)
        except p.ProtocolError as exc:
            command = exc
        return self.handle(command, now)

    def handle(self, command: p.Command | p.ProtocolError, now: float) -> list[Action]:
        """Handle one already-parsed frame (or its parse error). Counts toward the rate limit.

        Well-formed ``/ack`` and ``/nack`` frames on an open ``wsmq.v1`` session are not
        counted: the subscription window already bounds them (each gives a held message up,
        and a client cannot hold more than its window), and counting them would cap a
        subscriber's throughput at the frame rate. Ids the client does not hold are charged
        afterwards (:meth:`acks_done`). ``/extend`` keeps its messages held, so nothing else
        bounds it: it is counted like any frame.
        """
        if self.state is State.CLOSED:
            return []
        self._now = now
        free = isinstance(command, _GIVE_UP_VERBS) and self.state is State.OPEN and self.v1
        if not free and not self._rate_ok(now):
            return self._close(p.CLOSE_RATE_LIMITED, "rate limit exceeded")
        return self._dispatch(command)

    def control_frame(self, now: float) -> list[Action]:
        """A client ping or pong: nothing to answer here, but it counts toward the rate limit
        like any frame (the connection sends the pong)."""
        if self.state is State.CLOSED or self._rate_ok(now):
            return []
        return self._close(p.CLOSE_RATE_LIMITED, "rate limit exceeded")

    def _rate_ok(self, now: float) -> bool:
        return self._bucket is None or self._bucket.take(now)

    def _charged(self, reply: Reply) -> list[Action]:
        """An ack that fails is not free (see :meth:`handle`): it spends a rate token."""
        if not self._rate_ok(self._now):
            return self._close(p.CLOSE_RATE_LIMITED, "rate limit exceeded")
        return [reply]

    def _dispatch(self, command: Pending) -> list[Action]:
        if self.state is State.OPEN and not self._pending:
            return self._open(command)
        if self.state is State.AWAITING_AUTH:
            if isinstance(command, p.Auth):
                self.state = State.AUTHENTICATING
                return [DoAuthenticate(command.x_token, command.x_access_token)]
            return self._close(p.CLOSE_AUTH_FAILED, "authentication required")
        # AUTHENTICATING (browsers send /auth and then /subscribe without waiting), or OPEN
        # with frames held during /auth still waiting behind a hook: keep them in order.
        if len(self._pending) >= self.limits.max_pending:
            return self._close(p.CLOSE_POLICY, "too many frames before authentication")
        self._pending.append(command)
        return []

    def _open(self, command: Pending) -> list[Action]:
        match command:
            case p.ProtocolError():
                return [self._error(command.code, command.message)]
            case p.Subscribe(qname):
                return self._subscribe(command)
            case p.Unsubscribe(qname):
                return self._unsubscribe(qname)
            case p.Leave(qname, _):
                if self._hooked and self.user is not None:
                    return [DoAuthorize(self.user, qname, self._leave_action, command)]
                if not self._allowed(qname, "leave"):
                    return [self._forbidden(qname, "leave")]
                return self._leave_allowed(command)
            case p.Ack(qname, msg_id):
                return self._ack(qname, (msg_id,))
            case p.AckMany(qname, ids):
                return self._ack(qname, ids)
            case p.Nack(qname, ids, delay):
                return self._held_verb(qname, "nack", DoNack(qname, ids, delay))
            case p.Extend(qname, ids, seconds):
                if seconds > self.limits.max_extend:
                    detail = f"seconds must be 1..{self.limits.max_extend} (max_extend)"
                    return [self._error(p.ErrorCode.BAD_FRAME, detail, queue=qname)]
                return self._held_verb(qname, "extend", DoExtend(qname, ids, seconds))
            case p.Send(qname, message):
                if self._hooked and self.user is not None:
                    return [DoAuthorize(self.user, qname, "send", command)]
                if not self._allowed(qname, "send"):
                    return [self._forbidden(qname, "send to")]
                return [DoSend(qname, message)]
            case p.Auth():
                return [self._error(p.ErrorCode.ALREADY_AUTHENTICATED, "already authenticated")]
            case p.Refresh(x_token):
                return [DoRefresh(x_token)]
        return []  # pragma: no cover - exhaustive

    def _ack(self, qname: str, ids: tuple[str, ...]) -> list[Action]:
        return self._held_verb(qname, "ack", DoAck(qname, ids))

    def _held_verb(self, qname: str, verb: str, action: DoAck | DoNack | DoExtend) -> list[Action]:
        """``/ack``, ``/nack``, ``/extend``: v1 only, on a subscribed queue."""
        if not self.v1:
            return [
                self._error(
                    p.ErrorCode.ACK_NOT_SUPPORTED,
                    f"{verb} needs the wsmq.v1 subprotocol; legacy deliveries are deleted "
                    "once written",
                    queue=qname,
                )
            ]
        if qname not in self._subscribed:
            return self._charged(
                self._error(p.ErrorCode.NOT_SUBSCRIBED, "not subscribed", queue=qname)
            )
        return [action]

    def _subscribe(self, command: p.Subscribe) -> list[Action]:
        qname, device = command.qname, command.device
        for table in (self._subscribing, self._subscribed):
            if qname in table and table[qname] != device:
                return [self._other_device(qname, table[qname])]
        if qname in self._subscribing:
            return []  # the outstanding subscribe_done/failed answers for both frames
        if qname in self._subscribed:
            return self._v1_reply(encode_subscribed(qname, device))
        if self._hooked and self.user is not None:
            return [DoAuthorize(self.user, qname, "subscribe", command)]
        if not self._allowed(qname, "subscribe"):
            return [self._forbidden(qname, "subscribe to")]
        return self._subscribe_allowed(qname, device)

    def _other_device(self, qname: str, device: str | None) -> Reply:
        held = f"as device {device}" if device is not None else "without a device"
        return self._error(
            p.ErrorCode.BAD_FRAME,
            f"already subscribed to {qname} {held}: /unsubscribe/{qname} first",
            queue=qname,
        )

    def _leave_allowed(self, command: p.Leave) -> list[Action]:
        """``/leave``: end this connection's own subscription as that device first."""
        qname, device = command.qname, command.device
        actions: list[Action] = []
        if device is not None and (
            self._subscribed.get(qname, "") == device or self._subscribing.get(qname, "") == device
        ):
            self._subscribed.pop(qname, None)
            self._subscribing.pop(qname, None)
            actions.append(DoUnsubscribe(qname))
        return [*actions, DoLeave(qname, device)]

    def _subscribe_allowed(self, qname: str, device: str | None = None) -> list[Action]:
        if len(self._subscribed) + len(self._subscribing) >= self.limits.max_subscriptions:
            return [
                self._error(
                    p.ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    f"at most {self.limits.max_subscriptions} subscriptions per connection",
                    queue=qname,
                )
            ]
        self._subscribing[qname] = device
        return [DoSubscribe(qname, device)]

    def _unsubscribe(self, qname: str) -> list[Action]:
        actions: list[Action] = []
        if qname in self._subscribed or qname in self._subscribing:
            self._subscribed.pop(qname, None)
            self._subscribing.pop(qname, None)
            actions.append(DoUnsubscribe(qname))
        return actions + self._v1_reply(encode_unsubscribed(qname))

    def _allowed(self, qname: str, action: str) -> bool:
        user = self.user
        try:
            return user is not None and default_authorize(user, qname, action)
        except Exception:
            # A malformed user (e.g. from an authenticate hook) must not open queues up, nor
            # kill the connection.
            log.exception("authorize failed", extra={"queue": qname, "action": action})
            return False

    def _replay(self) -> list[Action]:
        """Handle the frames held during ``/auth``, in order; stop behind a
        :class:`DoAuthorize` (its :meth:`authorized` goes on with the rest)."""
        actions: list[Action] = []
        pending = self._pending
        while pending and self.state is State.OPEN:
            more = self._open(pending.pop(0))
            actions += more
            if more and isinstance(more[-1], DoAuthorize):
                break
        return actions

    # --- results reported by the I/O layer --------------------------------------------------

    def authenticated(self, user: User, now: float) -> list[Action]:
        """``/auth`` tokens verified: open the session and replay frames received meanwhile."""
        if self.state is not State.AUTHENTICATING:
            return []
        self.user = user
        self.token_exp = user.token_exp
        self._arm_warning(now)
        self.state = State.OPEN
        self.auth_deadline = None
        actions = self._v1_reply(encode_authenticated(user.user_id, user.token_exp))
        actions += self.tick(now)
        return actions + self._replay()

    def authorized(self, request: DoAuthorize, allowed: bool) -> list[Action]:
        """The hook answered ``request``: go on with its command, or answer ``forbidden``; then
        with the frames held behind it."""
        if self.state is not State.OPEN:
            return []
        qname = request.qname
        match request.then:
            case p.Subscribe(_, device):
                if qname in self._subscribing or qname in self._subscribed:
                    actions: list[Action] = []  # answered meanwhile (not by a sane executor)
                elif allowed:
                    actions = self._subscribe_allowed(qname, device)
                else:
                    actions = [self._forbidden(qname, "subscribe to")]
            case p.Leave():
                if allowed:
                    actions = self._leave_allowed(request.then)
                else:
                    actions = [self._forbidden(qname, "leave")]
            case p.Send(_, message):
                actions = [DoSend(qname, message) if allowed else self._forbidden(qname, "send to")]
        return actions + self._replay() if self._pending else actions

    def auth_failed(self, reason: str = "authentication failed") -> list[Action]:
        """``/auth`` tokens rejected: close with 4401."""
        if self.state is State.CLOSED:
            return []
        return self._close(p.CLOSE_AUTH_FAILED, reason)

    def refreshed(self, user_id: str, exp: float | None, now: float) -> list[Action]:
        """``/refresh`` JWT verified. Only a token of the same user extends the connection."""
        if self.state is not State.OPEN:
            return []
        if user_id != self.user_id:
            return [self._error(p.ErrorCode.REFRESH_FAILED, "token belongs to another user")]
        self.token_exp = exp
        self._arm_warning(now)
        return self._v1_reply(encode_refreshed(exp)) + self.tick(now)

    def refresh_failed(self, reason: str = "invalid token") -> list[Action]:
        """``/refresh`` JWT rejected: error frame; the connection keeps its current expiry."""
        if self.state is not State.OPEN:
            return []
        return [self._error(p.ErrorCode.REFRESH_FAILED, reason)]

    def refresh_revoked(self, reason: str = "access revoked") -> list[Action]:
        """``/refresh`` found the user's access gone in the store (disabled, deleted, access
        token revoked or replaced): error frame, then close with 4403 like a revocation."""
        if self.state is not State.OPEN:
            return []
        return [self._error(p.ErrorCode.REFRESH_FAILED, reason), *self.revoked()]

    def subscribe_done(self, qname: str) -> list[Action]:
        """The subscription is active."""
        if qname not in self._subscribing or self.state is not State.OPEN:
            return []
        device = self._subscribing.pop(qname, None)
        self._subscribed[qname] = device
        return self._v1_reply(encode_subscribed(qname, device))

    def leave_done(self, qname: str, device: str, removed: bool) -> list[Action]:
        """``/leave`` removed the device's inbox (``removed``: it was registered)."""
        if self.state is not State.OPEN:
            return []
        return self._v1_reply(encode_left(qname, device, removed))

    def leave_failed(self, qname: str, code: str, detail: str) -> list[Action]:
        """``/leave`` did not remove it (``device_in_use``, ``unavailable``)."""
        if self.state is not State.OPEN:
            return []
        return [self._error(code, detail, queue=qname)]

    def subscribe_failed(self, qname: str, code: str, detail: str) -> list[Action]:
        """The subscription could not be made (e.g. ``queue_not_found``, ``unavailable``)."""
        if qname not in self._subscribing or self.state is not State.OPEN:
            return []
        self._subscribing.pop(qname, None)
        return [self._error(code, detail, queue=qname)]

    def send_done(self, qname: str, msg_id: str) -> list[Action]:
        """The message was queued (v1: a ``sent`` reply with its id)."""
        if self.state is not State.OPEN:
            return []
        return self._v1_reply(encode_sent(qname, msg_id))

    def send_failed(self, qname: str, code: str, detail: str) -> list[Action]:
        """The message was not queued (e.g. ``queue_not_found``, ``message_too_long``)."""
        if self.state is not State.OPEN:
            return []
        return [self._error(code, detail, queue=qname)]

    def acks_done(self, qname: str, ids: Sequence[str], deleted: Sequence[bool]) -> list[Action]:
        """Acks of ``qname`` executed: per id ``acked``, or ``unknown_message`` where
        ``deleted`` is False (the id was not in flight; such an ack spends a rate token)."""
        return self._per_id(qname, ids, deleted, encode_acked)

    def nacks_done(self, qname: str, ids: Sequence[str], held: Sequence[bool]) -> list[Action]:
        """Nacks executed: per id ``nacked``, or ``unknown_message`` (as :meth:`acks_done`)."""
        return self._per_id(qname, ids, held, encode_nacked)

    def extends_done(self, qname: str, ids: Sequence[str], held: Sequence[bool]) -> list[Action]:
        """Extends executed: per id ``extended``, or ``unknown_message`` (as :meth:`acks_done`)."""
        return self._per_id(qname, ids, held, encode_extended)

    def _per_id(
        self,
        qname: str,
        ids: Sequence[str],
        held: Sequence[bool],
        encode: Callable[[str, str], str],
    ) -> list[Action]:
        actions: list[Action] = []
        for msg_id, ok in zip(ids, held, strict=True):
            if self.state is not State.OPEN:
                break
            if ok:
                actions.append(Reply(encode(qname, msg_id)))
                continue
            actions += self._charged(
                self._error(
                    p.ErrorCode.UNKNOWN_MESSAGE,
                    "no such message in flight (already acked, or redelivered after vt)",
                    queue=qname,
                    msg_id=msg_id,
                )
            )
        return actions

    def acks_failed(self, qname: str, ids: Sequence[str], code: str, detail: str) -> list[Action]:
        """Acks (nacks, extends) of ``qname`` could not be executed (e.g. ``unavailable``): an
        error per id."""
        if self.state is not State.OPEN:
            return []
        return [self._error(code, detail, queue=qname, msg_id=msg_id) for msg_id in ids]

    # --- time and server events -------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Enforce deadlines: auth timeout (4408), token expiry (4403), v1 ``expiring`` warning."""
        if self.state in (State.AWAITING_AUTH, State.AUTHENTICATING):
            if self.auth_deadline is not None and now >= self.auth_deadline:
                return self._close(p.CLOSE_AUTH_TIMEOUT, "authentication timeout")
            return []
        if self.state is not State.OPEN or self.token_exp is None:
            return []
        if now >= self.token_exp:
            return self._close(p.CLOSE_TOKEN_EXPIRED, "token expired")
        if self.v1 and self._warn_at is not None and now >= self._warn_at:
            self._warn_at = None
            return [Reply(encode_expiring(math.ceil(self.token_exp - now)))]
        return []

    def _arm_warning(self, now: float) -> None:
        """Schedule the ``expiring`` warning of the token accepted at ``now``.

        ``expiring_warning`` before ``exp``, but never earlier than half the token's remaining
        lifetime: a token shorter than the warning would otherwise be warned about at once,
        and again right after each refresh with another such token (a refresh loop).
        """
        if self.token_exp is None:
            self._warn_at = None
            return
        lead = min(self.limits.expiring_warning, max(0.0, (self.token_exp - now) / 2))
        self._warn_at = self.token_exp - lead

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (epoch s), or ``None``."""
        if self.state in (State.AWAITING_AUTH, State.AUTHENTICATING):
            return self.auth_deadline
        if self.state is not State.OPEN or self.token_exp is None:
            return None
        if self.v1 and self._warn_at is not None:
            return self._warn_at
        return self.token_exp

    def revoked(self) -> list[Action]:
        """The user's access token was revoked (logout, disable): close with 4403."""
        if self.state is State.CLOSED:
            return []
        return self._close(p.CLOSE_TOKEN_EXPIRED, "access revoked")

    def shutdown(self, *, restart: bool = False) -> list[Action]:
        """The node is stopping: close with 1001 (or 1012 when restarting)."""
        if self.state is State.CLOSED:
            return []
        if restart:
            return self._close(p.CLOSE_SERVICE_RESTART, "server restarting")
        return self._close(p.CLOSE_GOING_AWAY, "server shutting down")

    # --- helpers ----------------------------------------------------------------------------

    def _close(self, code: int, reason: str) -> list[Action]:
        self.state = State.CLOSED
        self._pending.clear()
        return [Close(code, p.close_reason(reason))]

    def _v1_reply(self, text: str) -> list[Action]:
        # Legacy clients only ever got {"message": ...} frames: success replies are v1-only.
        return [Reply(text)] if self.v1 else []

    def _error(
        self, code: str, detail: str, *, queue: str | None = None, msg_id: str | None = None
    ) -> Reply:
        return Reply(encode_error(code, detail, queue=queue, msg_id=msg_id), error=str(code))

    def _forbidden(self, qname: str, verb: str) -> Reply:
        return self._error(p.ErrorCode.FORBIDDEN, f"not allowed to {verb} {qname}", queue=qname)

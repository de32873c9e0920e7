"""The wsmq WebSocket wire protocol's vocabulary and the client-frame parser.

Pure and I/O-free (python-websockets style): nothing here touches a socket, a clock or Redis,
so every rule is unit-tested without a server. Server frames are encoded (and decoded, for
clients) by :mod:`wsmq.protocol.server_frames`. The full reference is ``docs/protocol.md``.

Client → server text frames::

    /subscribe/<qname>[ device=<id>]   /unsubscribe/<qname>   /leave/<qname> device=<id>
    /ack/<qname>/<id>[,<id>...]   /send/<qname> <message>
    /nack/<qname>/<id>[,<id>...] [<delay-seconds>]
    /extend/<qname>/<id>[,<id>...] <seconds>
    /auth <x-token> <x-access-token>
    /refresh <x-token>

Server → client frames (:mod:`~wsmq.protocol.server_frames`) depend on the connection's
:class:`Mode`:

* ``Mode.LEGACY`` (no subprotocol): deliveries are exactly the original's
  ``JSON.stringify({message: body})``; errors are ``{"type":"error","code":...,"detail":...}``
  (deliberately without a ``message`` key, so a legacy client reading ``.message`` can never
  mistake an error for a delivery); no other control frames.
* ``Mode.V1`` (subprotocol ``wsmq.v1``): JSON envelopes with a ``type`` key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final

from wsmq.errors import WsmqError
from wsmq.protocol import names
from wsmq.protocol.names import (
    DEVICE_PATTERN,
    DEVICE_RULE,
    ID_PATTERN,
    QNAME_PATTERN,
    RESERVED_QNAMES,
    is_valid_id,
    is_valid_qname,
)

__all__ = [
    "CLOSE_AUTH_FAILED",
    "CLOSE_AUTH_TIMEOUT",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_RATE_LIMITED",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TOO_BIG",
    "DEFAULT_MAX_FRAME_SIZE",
    "MAX_ACK_IDS",
    "MAX_VT",
    "QUEUE_ERROR_CODES",
    "SUBPROTOCOL",
    "SUBPROTOCOLS",
    "Ack",
    "AckMany",
    "Auth",
    "Command",
    "ErrorCode",
    "Extend",
    "Leave",
    "Mode",
    "Nack",
    "ProtocolError",
    "Refresh",
    "Send",
    "Subscribe",
    "Unsubscribe",
    "close_reason",
    "is_valid_id",
    "is_valid_qname",
    "mode_for_subprotocol",
    "parse_frame",
]

SUBPROTOCOL: Final = "wsmq.v1"
#: What the server offers in the handshake (``WebSocketResponse(protocols=SUBPROTOCOLS)``).
SUBPROTOCOLS: Final = (SUBPROTOCOL,)
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024

# RFC 6455 codes.
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001  # node shutting down: reconnect elsewhere
#: Never sent (RFC 6455 reserves it): what a socket dropped without a close frame is counted as
#: (a peer that did not answer the heartbeat).
CLOSE_ABNORMAL: Final = 1006
CLOSE_POLICY: Final = 1008  # policy violation (e.g. too many frames before /auth completes)
CLOSE_TOO_BIG: Final = 1009  # frame larger than the limit
CLOSE_SERVICE_RESTART: Final = 1012  # node restarting: reconnect elsewhere
# wsmq application codes (4000-4999 are private-use).
CLOSE_AUTH_FAILED: Final = 4401
CLOSE_TOKEN_EXPIRED: Final = 4403  # token expired or access revoked
CLOSE_AUTH_TIMEOUT: Final = 4408
CLOSE_RATE_LIMITED: Final = 4429

#: Most ids one ``/ack`` frame may carry (1000 ids are ~33 KB, within the default frame size).
MAX_ACK_IDS: Final = 1000
#: Largest visibility timeout (seconds) a queue accepts (RSMQ's bound): ``/nack`` delays and
#: ``/extend`` durations; the session bounds ``/extend`` further by its ``max_extend``.
MAX_VT: Final = 9_999_999
# Tokens are JWTs / base64url / hex: printable ASCII without spaces. The cap keeps a hostile
# /auth frame from reaching the JWT decoder with megabytes of input.
_TOKEN_RE: Final = re.compile(r"[\x21-\x7e]{1,8192}")
_VERB_RE: Final = re.compile(r"/([a-z]+)")


class Mode(Enum):
    """Framing of server → client frames, chosen by the handshake's subprotocol."""

    LEGACY = "legacy"
    V1 = SUBPROTOCOL


def mode_for_subprotocol(protocol: str | None) -> Mode:
    """Map the negotiated subprotocol (``ws.ws_protocol`` in aiohttp) to a :class:`Mode`."""
    return Mode.V1 if protocol == SUBPROTOCOL else Mode.LEGACY


class ErrorCode(StrEnum):
    """Every ``code`` an error frame can carry. Values are the wire strings."""

    # Frame-level (raised by parse_frame).
    UNKNOWN_COMMAND = "unknown_command"
    BAD_FRAME = "bad_frame"
    INVALID_QUEUE = "invalid_queue"
    INVALID_ID = "invalid_id"
    INVALID_DEVICE = "invalid_device"
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    # Session-level.
    FORBIDDEN = "forbidden"
    ACK_NOT_SUPPORTED = "ack_not_supported"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    DEVICE_IN_USE = "device_in_use"
    TOO_MANY_DEVICES = "too_many_devices"
    IS_GROUP = "is_group"
    ALREADY_AUTHENTICATED = "already_authenticated"
    REFRESH_FAILED = "refresh_failed"
    # Results of I/O reported back by the server layer.
    QUEUE_NOT_FOUND = "queue_not_found"
    MESSAGE_TOO_LONG = "message_too_long"
    UNKNOWN_MESSAGE = "unknown_message"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


#: The wire code of a failed queue call, by RSMQ's error name (``QueueError.name``); a name not
#: listed is the caller's to map (e.g. ``bad_frame`` for a ``/send``).
QUEUE_ERROR_CODES: Final[Mapping[str, ErrorCode]] = {
    "queueNotFound": ErrorCode.QUEUE_NOT_FOUND,
    "messageTooLong": ErrorCode.MESSAGE_TOO_LONG,
}


class ProtocolError(WsmqError, code="protocol_error"):
    """A client frame that cannot be accepted. ``code`` is an :class:`ErrorCode` value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"


# --- commands ------------------------------------------------------------------------------
# Secrets and message bodies are excluded from repr() so that logging a command never leaks
# a token or a payload.


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``/subscribe/<qname>``, or ``/subscribe/<qname> device=<id>``: subscribe as a device
    (its own durable inbox of the queue; docs/delivery.md, Devices)."""

    qname: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    """``/leave/<qname> device=<id>``: remove the device's inbox of the queue now."""

    qname: str
    device: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``/unsubscribe/<qname>``."""

    qname: str


@dataclass(frozen=True, slots=True)
class Ack:
    """``/ack/<qname>/<id>`` (``wsmq.v1`` only): delete a delivered message."""

    qname: str
    id: str


@dataclass(frozen=True, slots=True)
class AckMany:
    """``/ack/<qname>/<id>,<id>,...`` (``wsmq.v1`` only): :class:`Ack` for several messages of
    one queue in one frame (2 to :data:`MAX_ACK_IDS` ids; each is answered on its own)."""

    qname: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    """``/nack/<qname>/<id>[,<id>...] [<delay>]`` (``wsmq.v1`` only): give held messages back,
    visible again after ``delay`` seconds (0: at once)."""

    qname: str
    ids: tuple[str, ...]
    delay: int = 0


@dataclass(frozen=True, slots=True)
class Extend:
    """``/extend/<qname>/<id>[,<id>...] <seconds>`` (``wsmq.v1`` only): keep held messages
    hidden for ``seconds`` more from now (they stay held)."""

    qname: str
    ids: tuple[str, ...]
    seconds: int


@dataclass(frozen=True, slots=True)
class Send:
    """``/send/<qname> <message>``: publish ``message`` (verbatim) to ``qname``."""

    qname: str
    message: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Auth:
    """``/auth <x-token> <x-access-token>``: first-message authentication."""

    x_token: str = field(repr=False)
    x_access_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Refresh:
    """``/refresh <x-token>``: extend the connection with a fresh JWT of the same user."""

    x_token: str = field(repr=False)


Command = Subscribe | Unsubscribe | Leave | Ack | AckMany | Nack | Extend | Send | Auth | Refresh


# Queue names and ids follow wsmq.protocol.names (RSMQ's rules, so a name valid here is valid
# for every rsmq client; queue names also avoid the reserved ones).
_QNAME_DETAIL: Final = f"queue name must match {QNAME_PATTERN.pattern}"
_ID_DETAIL: Final = f"message id must match {ID_PATTERN.pattern}"


def _qname(value: str) -> str:
    if QNAME_PATTERN.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.INVALID_QUEUE, _QNAME_DETAIL)
    if value in RESERVED_QNAMES:
        raise ProtocolError(ErrorCode.INVALID_QUEUE, names.reserved_detail(value))
    return value


def _strip_eol(text: str) -> str:
    # Line-oriented clients (wscat, telnet-ish tools) append a newline; accept exactly one.
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def _tokens(rest: str, count: int, usage: str) -> list[str]:
    parts = _strip_eol(rest).split()
    if len(parts) != count or not all(_TOKEN_RE.fullmatch(p) for p in parts):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"usage: {usage}")
    return parts


def _utf8_len_exceeds(text: str, max_size: int) -> bool:
    # A UTF-8 encoding is 1..4 bytes per code point: skip the encode when the answer is clear.
    if len(text) > max_size:
        return True
    if len(text) * 4 <= max_size:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > max_size


def parse_frame(text: str | bytes, *, max_size: int = DEFAULT_MAX_FRAME_SIZE) -> Command:
    """Parse one client frame into a command.

    ``max_size`` is in UTF-8 bytes. Bytes input (a binary frame) is always rejected.
    Commands other than ``/send`` tolerate one trailing ``\\n`` or ``\\r\\n``; a ``/send``
    message is everything after the first space, kept verbatim.

    Raises:
        ProtocolError: with one of the frame-level :class:`ErrorCode` values.
    """
    if not isinstance(text, str):
        raise ProtocolError(ErrorCode.BINARY_NOT_SUPPORTED, "binary frames are not supported")
    if _utf8_len_exceeds(text, max_size):
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame larger than {max_size} bytes")
    verb_match = _VERB_RE.match(text)
    if verb_match is None:
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, "frames start with /<command>")
    verb = verb_match.group(1)
    parser = _PARSERS.get(verb)
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND, f"unknown command /{verb}")
    sep_at = verb_match.end()
    sep, rest = text[sep_at : sep_at + 1], text[sep_at + 1 :]
    return parser(sep, rest)


_SUBSCRIBE_USAGE: Final = "usage: /subscribe/<qname> [device=<id>]"
_LEAVE_USAGE: Final = "usage: /leave/<qname> device=<id>"
_DEVICE_DETAIL: Final = f"{DEVICE_RULE} ({DEVICE_PATTERN.pattern})"


def _queue_and_device(rest: str) -> tuple[str, str | None]:
    """``<qname>`` or ``<qname> device=<id>`` (one space, nothing else)."""
    qname, space, option = _strip_eol(rest).partition(" ")
    if not space:
        return _qname(qname), None
    key, eq, device = option.partition("=")
    if key != "device" or not eq:
        # Not an option: as before devices existed, the whole text is a (bad) queue name.
        raise ProtocolError(ErrorCode.INVALID_QUEUE, _QNAME_DETAIL)
    if DEVICE_PATTERN.fullmatch(device) is None:
        raise ProtocolError(ErrorCode.INVALID_DEVICE, _DEVICE_DETAIL)
    return _qname(qname), device


def _parse_subscribe(sep: str, rest: str) -> Command:
    if sep != "/":
        raise ProtocolError(ErrorCode.BAD_FRAME, _SUBSCRIBE_USAGE)
    return Subscribe(*_queue_and_device(rest))


def _parse_leave(sep: str, rest: str) -> Command:
    if sep != "/":
        raise ProtocolError(ErrorCode.BAD_FRAME, _LEAVE_USAGE)
    qname, device = _queue_and_device(rest)
    if device is None:
        raise ProtocolError(ErrorCode.BAD_FRAME, _LEAVE_USAGE)
    return Leave(qname, device)


def _parse_unsubscribe(sep: str, rest: str) -> Command:
    if sep != "/":
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /unsubscribe/<qname>")
    return Unsubscribe(_qname(_strip_eol(rest)))


def _id_list(verb: str, id_list: str) -> tuple[str, ...]:
    ids = tuple(id_list.split(","))
    if len(ids) > MAX_ACK_IDS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"at most {MAX_ACK_IDS} ids per /{verb} frame")
    for msg_id in ids:
        if ID_PATTERN.fullmatch(msg_id) is None:
            raise ProtocolError(ErrorCode.INVALID_ID, _ID_DETAIL)
    return ids


def _parse_ack(sep: str, rest: str) -> Command:
    parts = _strip_eol(rest).split("/")
    if sep != "/" or len(parts) != 2:
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /ack/<qname>/<id>[,<id>...]")
    qname, id_list = parts
    _qname(qname)
    if "," not in id_list:
        if ID_PATTERN.fullmatch(id_list) is None:
            raise ProtocolError(ErrorCode.INVALID_ID, _ID_DETAIL)
        return Ack(qname, id_list)
    return AckMany(qname, _id_list("ack", id_list))


_SECONDS_RE: Final = re.compile(r"[0-9]{1,7}")


def _ids_and_seconds(
    verb: str, sep: str, rest: str, usage: str, *, required: bool
) -> tuple[str, tuple[str, ...], int | None]:
    """``<qname>/<id>[,<id>...][ <seconds>]`` of a ``/nack`` or ``/extend`` frame."""
    target, space, seconds = _strip_eol(rest).partition(" ")
    parts = target.split("/")
    if sep != "/" or len(parts) != 2 or (required and not space):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"usage: {usage}")
    qname, id_list = parts
    _qname(qname)
    ids = _id_list(verb, id_list)
    if not space:
        return qname, ids, None
    if _SECONDS_RE.fullmatch(seconds) is None:  # 7 digits: at most MAX_VT
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"seconds must be an integer 0..{MAX_VT}; usage: {usage}"
        )
    return qname, ids, int(seconds)


def _parse_nack(sep: str, rest: str) -> Command:
    qname, ids, delay = _ids_and_seconds(
        "nack", sep, rest, "/nack/<qname>/<id>[,<id>...] [<delay-seconds>]", required=False
    )
    return Nack(qname, ids, delay or 0)


def _parse_extend(sep: str, rest: str) -> Command:
    usage = "/extend/<qname>/<id>[,<id>...] <seconds>"
    qname, ids, seconds = _ids_and_seconds("extend", sep, rest, usage, required=True)
    if not seconds:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"seconds must be >= 1; usage: {usage}")
    return Extend(qname, ids, seconds)


def _parse_send(sep: str, rest: str) -> Command:
    qname, space, message = rest.partition(" ")
    if sep != "/" or not space:
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /send/<qname> <message>")
    return Send(_qname(qname), message)


def _parse_auth(sep: str, rest: str) -> Command:
    if sep != " ":
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /auth <x-token> <x-access-token>")
    x_token, x_access_token = _tokens(rest, 2, "/auth <x-token> <x-access-token>")
    return Auth(x_token, x_access_token)


def _parse_refresh(sep: str, rest: str) -> Command:
    if sep != " ":
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /refresh <x-token>")
    (x_token,) = _tokens(rest, 1, "/refresh <x-token>")
    return Refresh(x_token)


_PARSERS: Final[dict[str, Callable[[str, str], Command]]] = {
    "subscribe": _parse_subscribe,
    "unsubscribe": _parse_unsubscribe,
    "leave": _parse_leave,
    "ack": _parse_ack,
    "nack": _parse_nack,
    "extend": _parse_extend,
    "send": _parse_send,
    "auth": _parse_auth,
    "refresh": _parse_refresh,
}


def close_reason(text: str) -> str:
    """Truncate a close reason to the 123 UTF-8 bytes RFC 6455 allows."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:123].decode("utf-8", "ignore")

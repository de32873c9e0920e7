"""The wsmq WebSocket wire protocol: parse client frames, encode server frames.

Pure and I/O-free (python-websockets style): nothing here touches a socket, a clock or Redis,
so every rule is unit-tested without a server. The full reference is ``docs/protocol.md``.

Client → server text frames::

    /subscribe/<qname>            /unsubscribe/<qname>
    /ack/<qname>/<id>             /send/<qname> <message>
    /auth <x-token> <x-access-token>
    /refresh <x-token>

Server → client frames depend on the connection's :class:`Mode`:

* ``Mode.LEGACY`` (no subprotocol): deliveries are exactly the original's
  ``JSON.stringify({message: body})``; errors are ``{"type":"error","code":...,"detail":...}``
  (deliberately without a ``message`` key, so a legacy client reading ``.message`` can never
  mistake an error for a delivery); no other control frames.
* ``Mode.V1`` (subprotocol ``wsmq.v1``): JSON envelopes with a ``type`` key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, Final

from wsmq.errors import WsmqError
from wsmq.protocol import names
from wsmq.protocol.names import QNAME_PATTERN, RESERVED_QNAMES

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
    "ID_RE",
    "MAX_ACK_IDS",
    "QNAME_RE",
    "SUBPROTOCOL",
    "SUBPROTOCOLS",
    "Ack",
    "AckMany",
    "Auth",
    "Command",
    "ErrorCode",
    "Mode",
    "ProtocolError",
    "Refresh",
    "Send",
    "Subscribe",
    "Unsubscribe",
    "close_reason",
    "dumps",
    "dumps_utf8",
    "encode_acked",
    "encode_authenticated",
    "encode_error",
    "encode_expiring",
    "encode_message",
    "encode_message_utf8",
    "encode_refreshed",
    "encode_sent",
    "encode_subscribed",
    "encode_unsubscribed",
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

# RSMQ's own validation rules, so a name valid here is valid for every rsmq client; queue
# names also avoid the reserved ones (wsmq.protocol.names, the one rule).
QNAME_RE: Final = QNAME_PATTERN
ID_RE: Final = re.compile(r"[A-Za-z0-9:]{32}")
#: Most ids one ``/ack`` frame may carry (1000 ids are ~33 KB, within the default frame size).
MAX_ACK_IDS: Final = 1000
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
    FRAME_TOO_LARGE = "frame_too_large"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    # Session-level.
    FORBIDDEN = "forbidden"
    ACK_NOT_SUPPORTED = "ack_not_supported"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    ALREADY_AUTHENTICATED = "already_authenticated"
    REFRESH_FAILED = "refresh_failed"
    # Results of I/O reported back by the server layer.
    QUEUE_NOT_FOUND = "queue_not_found"
    MESSAGE_TOO_LONG = "message_too_long"
    UNKNOWN_MESSAGE = "unknown_message"
    UNAVAILABLE = "unavailable"
    INTERNAL_ERROR = "internal_error"


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
    """``/subscribe/<qname>``."""

    qname: str


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


Command = Subscribe | Unsubscribe | Ack | AckMany | Send | Auth | Refresh


def is_valid_qname(qname: str) -> bool:
    """The queue-name rule (:data:`wsmq.protocol.names.QNAME_RULE`)."""
    return names.is_valid_qname(qname)


def is_valid_id(msg_id: str) -> bool:
    """RSMQ's message-id rule: ``^[A-Za-z0-9:]{32}$``."""
    return ID_RE.fullmatch(msg_id) is not None


def _qname(value: str) -> str:
    if QNAME_RE.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.INVALID_QUEUE, "queue name must match [A-Za-z0-9_-]{1,160}")
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


def _parse_subscribe(sep: str, rest: str) -> Command:
    if sep != "/":
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /subscribe/<qname>")
    return Subscribe(_qname(_strip_eol(rest)))


def _parse_unsubscribe(sep: str, rest: str) -> Command:
    if sep != "/":
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /unsubscribe/<qname>")
    return Unsubscribe(_qname(_strip_eol(rest)))


def _parse_ack(sep: str, rest: str) -> Command:
    parts = _strip_eol(rest).split("/")
    if sep != "/" or len(parts) != 2:
        raise ProtocolError(ErrorCode.BAD_FRAME, "usage: /ack/<qname>/<id>[,<id>...]")
    qname, id_list = parts
    _qname(qname)
    if "," not in id_list:
        if ID_RE.fullmatch(id_list) is None:
            raise ProtocolError(ErrorCode.INVALID_ID, "message id must match [A-Za-z0-9:]{32}")
        return Ack(qname, id_list)
    ids = tuple(id_list.split(","))
    if len(ids) > MAX_ACK_IDS:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"at most {MAX_ACK_IDS} ids per /ack frame")
    for msg_id in ids:
        if ID_RE.fullmatch(msg_id) is None:
            raise ProtocolError(ErrorCode.INVALID_ID, "message id must match [A-Za-z0-9:]{32}")
    return AckMany(qname, ids)


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
    "ack": _parse_ack,
    "send": _parse_send,
    "auth": _parse_auth,
    "refresh": _parse_refresh,
}


# --- encoding --------------------------------------------------------------------------------

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _json_dumps(obj: dict[str, Any]) -> str:
    # Compact, non-ASCII left as is, control characters as \u00xx: byte-for-byte what
    # JavaScript's JSON.stringify prints. A lone surrogate (only possible from a lenient
    # decoder) is escaped as \udxxx, again as JSON.stringify does, so output is valid UTF-8.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


try:
    import orjson

    def dumps(obj: dict[str, Any]) -> str:
        """Compact JSON, identical to JavaScript's ``JSON.stringify`` for strings."""
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # lone surrogates; the stdlib path handles them like JS does
            return _json_dumps(obj)

    def dumps_utf8(obj: dict[str, Any]) -> bytes:
        """:func:`dumps` as UTF-8 bytes (what goes on the wire), without a str round trip."""
        try:
            return orjson.dumps(obj)
        except TypeError:
            return _json_dumps(obj).encode()

except ImportError:  # pragma: no cover - orjson is an optional speed-up

    def dumps(obj: dict[str, Any]) -> str:
        """Compact JSON, identical to JavaScript's ``JSON.stringify`` for strings."""
        return _json_dumps(obj)

    def dumps_utf8(obj: dict[str, Any]) -> bytes:
        """:func:`dumps` as UTF-8 bytes (what goes on the wire)."""
        return _json_dumps(obj).encode()


def _num(value: float) -> int | float:
    # Epoch values arrive as float from PyJWT/Redis; integral ones go out as integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _message_obj(
    mode: Mode, qname: str, msg_id: str, rc: int, sent: float, body: str
) -> dict[str, Any]:
    if mode is Mode.LEGACY:
        return {"message": body}
    return {
        "type": "message",
        "queue": qname,
        "id": msg_id,
        "rc": rc,
        "sent": _num(sent),
        "message": body,
    }


def encode_message(mode: Mode, qname: str, msg_id: str, rc: int, sent: float, body: str) -> str:
    """A delivered message. Legacy: ``{"message":body}``; v1: the full envelope."""
    return dumps(_message_obj(mode, qname, msg_id, rc, sent, body))


def encode_message_utf8(
    mode: Mode, qname: str, msg_id: str, rc: int, sent: float, body: str
) -> bytes:
    """:func:`encode_message` as the UTF-8 payload of a text frame."""
    return dumps_utf8(_message_obj(mode, qname, msg_id, rc, sent, body))


def encode_subscribed(qname: str) -> str:
    """v1 reply to ``/subscribe``."""
    return dumps({"type": "subscribed", "queue": qname})


def encode_unsubscribed(qname: str) -> str:
    """v1 reply to ``/unsubscribe``."""
    return dumps({"type": "unsubscribed", "queue": qname})


def encode_sent(qname: str, msg_id: str) -> str:
    """v1 reply to ``/send``: the new message's id."""
    return dumps({"type": "sent", "queue": qname, "id": msg_id})


def encode_acked(qname: str, msg_id: str) -> str:
    """v1 reply to ``/ack``: the message was deleted."""
    return dumps({"type": "acked", "queue": qname, "id": msg_id})


def encode_error(
    code: str, message: str, *, queue: str | None = None, msg_id: str | None = None
) -> str:
    """An error frame, both modes: ``{"type":"error","code":...,"detail":...}``.

    The human-readable text goes under ``detail`` — never ``message`` — so that no error can
    be read as a delivery by a legacy client.
    """
    obj: dict[str, Any] = {"type": "error", "code": str(code), "detail": message}
    if queue is not None:
        obj["queue"] = queue
    if msg_id is not None:
        obj["id"] = msg_id
    return dumps(obj)


def encode_expiring(seconds_left: float) -> str:
    """v1 warning: the token expires in ``seconds_left`` s; send ``/refresh`` before then."""
    return dumps({"type": "expiring", "seconds": _num(seconds_left)})


def encode_authenticated(user_id: str, exp: float | None) -> str:
    """v1 reply to a successful ``/auth``."""
    return dumps({"type": "authenticated", "user": user_id, "exp": _num_or_none(exp)})


def encode_refreshed(exp: float | None) -> str:
    """v1 reply to a successful ``/refresh``: the connection's new expiry (epoch s)."""
    return dumps({"type": "refreshed", "exp": _num_or_none(exp)})


def _num_or_none(value: float | None) -> int | float | None:
    return None if value is None else _num(value)


def close_reason(text: str) -> str:
    """Truncate a close reason to the 123 UTF-8 bytes RFC 6455 allows."""
    data = text.encode("utf-8")
    if len(data) <= 123:
        return text
    return data[:123].decode("utf-8", "ignore")

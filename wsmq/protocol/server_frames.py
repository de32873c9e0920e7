"""Server → client frames: the encoders the server uses and the decoder a client can use.

Every frame is one compact JSON object. ``Mode.LEGACY`` deliveries are exactly the original's
``JSON.stringify({message: body})``; everything else is a ``wsmq.v1`` envelope with a ``type``
key (errors too, in both modes, and never with a ``message`` key, so a legacy client reading
``.message`` cannot mistake an error for a delivery). Reference: ``docs/protocol.md`` § 3.

A client reads frames with :func:`decode_server_frame`::

    match decode_server_frame(text):
        case Message(queue, msg_id, rc, sent, body):
            handle(body)
            await ws.send_str(f"/ack/{queue}/{msg_id}")
        case ErrorFrame(code, detail):
            ...
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Final

from wsmq.errors import WsmqError
from wsmq.protocol.json_types import JsonScalar
from wsmq.protocol.wire import Mode

__all__ = [
    "Acked",
    "Authenticated",
    "ErrorFrame",
    "Expiring",
    "Extended",
    "FrameDecodeError",
    "Left",
    "LegacyMessage",
    "Message",
    "Nacked",
    "Refreshed",
    "Sent",
    "ServerFrame",
    "Subscribed",
    "Unsubscribed",
    "decode_server_frame",
    "dumps",
    "dumps_utf8",
    "encode_acked",
    "encode_authenticated",
    "encode_error",
    "encode_expiring",
    "encode_extended",
    "encode_left",
    "encode_message",
    "encode_message_utf8",
    "encode_nacked",
    "encode_refreshed",
    "encode_sent",
    "encode_subscribed",
    "encode_unsubscribed",
]

#: A server frame: a flat object of strings and numbers (``exp`` may be null), never nested.
FrameObject = dict[str, JsonScalar]

# --- encoding --------------------------------------------------------------------------------

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _json_dumps(obj: FrameObject) -> str:
    # Compact, non-ASCII left as is, control characters as \u00xx: byte-for-byte what
    # JavaScript's JSON.stringify prints. A lone surrogate (only possible from a lenient
    # decoder) is escaped as \udxxx, again as JSON.stringify does, so output is valid UTF-8.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


try:
    import orjson

    def dumps(obj: FrameObject) -> str:
        """Compact JSON, identical to JavaScript's ``JSON.stringify`` for strings."""
        try:
            return orjson.dumps(obj).decode()
        except TypeError:  # lone surrogates; the stdlib path handles them like JS does
            return _json_dumps(obj)

    def dumps_utf8(obj: FrameObject) -> bytes:
        """:func:`dumps` as UTF-8 bytes (what goes on the wire), without a str round trip."""
        try:
            return orjson.dumps(obj)
        except TypeError:
            return _json_dumps(obj).encode()

    def _loads(text: str | bytes) -> object:
        # orjson refuses lone surrogates, which a frame may carry escaped (\udxxx, as
        # JSON.stringify writes them): the stdlib parser takes those (and says what is wrong
        # with a frame that is not JSON at all).
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)

except ImportError:  # pragma: no cover - orjson is an optional speed-up

    def dumps(obj: FrameObject) -> str:
        """Compact JSON, identical to JavaScript's ``JSON.stringify`` for strings."""
        return _json_dumps(obj)

    def dumps_utf8(obj: FrameObject) -> bytes:
        """:func:`dumps` as UTF-8 bytes (what goes on the wire)."""
        return _json_dumps(obj).encode()

    def _loads(text: str | bytes) -> object:
        return json.loads(text)


def _num(value: float) -> int | float:
    # Epoch values arrive as float from PyJWT/Redis; integral ones go out as integers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _num_or_none(value: float | None) -> int | float | None:
    return None if value is None else _num(value)


def _message_obj(
    mode: Mode, qname: str, msg_id: str, rc: int, sent: float, body: str
) -> FrameObject:
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


def encode_subscribed(qname: str, device: str | None = None) -> str:
    """v1 reply to ``/subscribe`` (with the device of a device subscription)."""
    if device is None:
        return dumps({"type": "subscribed", "queue": qname})
    return dumps({"type": "subscribed", "queue": qname, "device": device})


def encode_left(qname: str, device: str, removed: bool) -> str:
    """v1 reply to ``/leave``: ``removed`` is false when the device was not registered."""
    return dumps({"type": "left", "queue": qname, "device": device, "removed": removed})


def encode_unsubscribed(qname: str) -> str:
    """v1 reply to ``/unsubscribe``."""
    return dumps({"type": "unsubscribed", "queue": qname})


def encode_sent(qname: str, msg_id: str) -> str:
    """v1 reply to ``/send``: the new message's id."""
    return dumps({"type": "sent", "queue": qname, "id": msg_id})


def encode_acked(qname: str, msg_id: str) -> str:
    """v1 reply to ``/ack``: the message was deleted."""
    return dumps({"type": "acked", "queue": qname, "id": msg_id})


def encode_nacked(qname: str, msg_id: str) -> str:
    """v1 reply to ``/nack``: the message was given back (visible after the frame's delay)."""
    return dumps({"type": "nacked", "queue": qname, "id": msg_id})


def encode_extended(qname: str, msg_id: str) -> str:
    """v1 reply to ``/extend``: the message stays hidden (and held) for the frame's seconds."""
    return dumps({"type": "extended", "queue": qname, "id": msg_id})


def encode_error(
    code: str, message: str, *, queue: str | None = None, msg_id: str | None = None
) -> str:
    """An error frame, both modes: ``{"type":"error","code":...,"detail":...}``.

    The human-readable text goes under ``detail`` — never ``message`` — so that no error can
    be read as a delivery by a legacy client.
    """
    obj: FrameObject = {"type": "error", "code": str(code), "detail": message}
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


# --- decoding (client side) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """A v1 delivery: ack it with ``/ack/<queue>/<id>``."""

    queue: str
    id: str
    rc: int
    sent: float
    message: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LegacyMessage:
    """A legacy delivery, ``{"message": body}`` (no subprotocol)."""

    message: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Subscribed:
    """v1 reply to ``/subscribe``; ``device`` for a device subscription."""

    queue: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Left:
    """v1 reply to ``/leave``: the device's inbox is gone (``removed``: it existed)."""

    queue: str
    device: str
    removed: bool


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """v1 reply to ``/unsubscribe``."""

    queue: str


@dataclass(frozen=True, slots=True)
class Sent:
    """v1 reply to ``/send``: the id of the queued message."""

    queue: str
    id: str


@dataclass(frozen=True, slots=True)
class Acked:
    """v1 reply to ``/ack``, one per id: the message was deleted."""

    queue: str
    id: str


@dataclass(frozen=True, slots=True)
class Nacked:
    """v1 reply to ``/nack``, one per id: the message was given back."""

    queue: str
    id: str


@dataclass(frozen=True, slots=True)
class Extended:
    """v1 reply to ``/extend``, one per id: the message stays hidden longer."""

    queue: str
    id: str


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """An error (both modes); ``queue``/``id`` name what it is about, when it is about one."""

    code: str
    detail: str
    queue: str | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Expiring:
    """v1 warning: the token expires in ``seconds``; send ``/refresh`` before then."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Authenticated:
    """v1 reply to ``/auth``: who the connection is, until ``exp`` (epoch s; ``None``: never)."""

    user: str
    exp: float | None


@dataclass(frozen=True, slots=True)
class Refreshed:
    """v1 reply to ``/refresh``: the connection's new expiry (epoch s; ``None``: never)."""

    exp: float | None


ServerFrame = (
    Message
    | LegacyMessage
    | Subscribed
    | Left
    | Unsubscribed
    | Sent
    | Acked
    | Nacked
    | Extended
    | ErrorFrame
    | Expiring
    | Authenticated
    | Refreshed
)


class FrameDecodeError(WsmqError, ValueError, code="frame_decode_error"):
    """A server frame that is not one of :data:`ServerFrame` (not JSON, unknown ``type``,
    a missing or mistyped field)."""


def _str(obj: dict[str, object], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise FrameDecodeError(f"{key!r} must be a string")
    return value


def _opt_str(obj: dict[str, object], key: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key)


def _number(obj: dict[str, object], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrameDecodeError(f"{key!r} must be a number")
    return value


def _opt_number(obj: dict[str, object], key: str) -> float | None:
    return None if obj.get(key) is None else _number(obj, key)


def _int(obj: dict[str, object], key: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameDecodeError(f"{key!r} must be an integer")
    return value


def decode_server_frame(text: str | bytes) -> ServerFrame:
    """Parse one frame the server sent (either mode) into its typed form.

    Unknown keys are ignored (a newer server may add some).

    Raises:
        FrameDecodeError: the frame is not a server frame.
    """
    try:
        obj: object = _loads(text)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise FrameDecodeError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameDecodeError("a server frame is a JSON object")
    kind = obj.get("type")
    if kind is None:
        return LegacyMessage(_str(obj, "message"))
    if kind == "message":  # the per-message path: well-formed frames checked inline
        queue, msg_id, rc, sent, body = (
            obj.get("queue"), obj.get("id"), obj.get("rc"), obj.get("sent"), obj.get("message"),
        )  # fmt: skip
        if (
            type(queue) is str
            and type(msg_id) is str
            and type(rc) is int
            and (type(sent) is float or type(sent) is int)
            and type(body) is str
        ):
            return Message(queue, msg_id, rc, sent, body)
    match kind:
        case "message":
            return Message(
                _str(obj, "queue"),
                _str(obj, "id"),
                _int(obj, "rc"),
                _number(obj, "sent"),
                _str(obj, "message"),
            )
        case "subscribed":
            return Subscribed(_str(obj, "queue"), _opt_str(obj, "device"))
        case "left":
            removed = obj.get("removed")
            if not isinstance(removed, bool):
                raise FrameDecodeError("'removed' must be a boolean")
            return Left(_str(obj, "queue"), _str(obj, "device"), removed)
        case "unsubscribed":
            return Unsubscribed(_str(obj, "queue"))
        case "sent":
            return Sent(_str(obj, "queue"), _str(obj, "id"))
        case "acked":
            return Acked(_str(obj, "queue"), _str(obj, "id"))
        case "nacked":
            return Nacked(_str(obj, "queue"), _str(obj, "id"))
        case "extended":
            return Extended(_str(obj, "queue"), _str(obj, "id"))
        case "error":
            return ErrorFrame(
                _str(obj, "code"), _str(obj, "detail"), _opt_str(obj, "queue"), _opt_str(obj, "id")
            )
        case "expiring":
            return Expiring(_number(obj, "seconds"))
        case "authenticated":
            return Authenticated(_str(obj, "user"), _opt_number(obj, "exp"))
        case "refreshed":
            return Refreshed(_opt_number(obj, "exp"))
    raise FrameDecodeError(f"unknown frame type {kind!r}")

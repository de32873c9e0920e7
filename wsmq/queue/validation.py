"""Pure input validation with RSMQ's exact rules, names and messages (no I/O).

RSMQ parses numbers with JavaScript's ``parseInt(value, 10)``: ``"12abc"`` is 12, ``1.9`` is 1,
``"abc"`` is NaN (rejected).  :func:`js_parse_int` reproduces that so the same inputs are
accepted and rejected here as by the ``rsmq`` npm package.
"""

from __future__ import annotations

import math
import re

from wsmq.protocol.names import (
    DEVICE_PATTERN,
    GROUP,
    ID_PATTERN,
    QNAME_PATTERN,
    RESERVED_QNAMES,
    reserved_detail,
    split_source,
)

from .errors import InvalidFormat, InvalidValue, MessageNotString, MissingParameter

__all__ = [
    "MAX_DELAY",
    "MAX_MAXSIZE",
    "MAX_VT",
    "MIN_MAXSIZE",
    "js_parse_int",
    "utf16_length",
    "validate_count",
    "validate_delay",
    "validate_device",
    "validate_id",
    "validate_max_receive_count",
    "validate_maxsize",
    "validate_message",
    "validate_message_ttl",
    "validate_qname",
    "validate_source",
    "validate_vt",
]

MAX_VT = 9_999_999
MAX_DELAY = 9_999_999
MIN_MAXSIZE = 1024
MAX_MAXSIZE = 65_536
MAX_RECEIVE_COUNT = 9_999_999
MAX_TTL = 9_999_999
MAX_BATCH = 1000

QNAME_RE = QNAME_PATTERN
ID_RE = ID_PATTERN
# JS parseInt skips leading white space, takes an optional sign and the leading decimal digits.
_JS_INT_RE = re.compile(r"[\s\ufeff]*([+-]?[0-9]+)")


def _js_number_to_string(value: float) -> str:
    """``String(number)`` as JavaScript writes it, for the ranges where it matters."""
    if value == 0:
        return "0"
    if 1e-6 <= abs(value) < 1e21:
        return repr(value)
    # JS switches to exponent notation here; only the leading digits matter to parseInt.
    return f"{value:e}"


def js_parse_int(value: object) -> int | None:
    """Return ``parseInt(value, 10)`` as JavaScript computes it; ``None`` stands for NaN."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = _js_number_to_string(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    match = _JS_INT_RE.match(text)
    return int(match.group(1)) if match else None


def _validate_name(value: object, item: str, pattern: re.Pattern[str]) -> str:
    if not value:  # RSMQ: `if (!o[item])` (undefined, null, "" and 0 are missing)
        raise MissingParameter(item)
    text = value if isinstance(value, str) else str(value)
    if not pattern.fullmatch(text):
        raise InvalidFormat(item)
    return text


def validate_qname(qname: object, item: str = "qname") -> str:
    """Return ``qname`` if it follows :data:`wsmq.protocol.names.QNAME_RULE`: RSMQ's
    ``^[a-zA-Z0-9_-]{1,160}$``, and not a reserved name (``QUEUES``).

    Raises ``MissingParameter`` ("No qname supplied") or ``InvalidFormat`` ("Invalid qname
    format", RSMQ's text; for a reserved name "Invalid qname format: QUEUES is reserved: ...").
    """
    name = _validate_name(qname, item, QNAME_RE)
    if name in RESERVED_QNAMES:
        raise InvalidFormat(item, f"Invalid {item} format: {reserved_detail(name)}")
    return name


def validate_device(device: object) -> str:
    """Return ``device`` if it follows :data:`wsmq.protocol.names.DEVICE_RULE`."""
    return _validate_name(device, "device", DEVICE_PATTERN)


def validate_source(name: object) -> str:
    """Return ``name`` if it is a queue name or a device inbox name ``<qname>@<device>``
    (:func:`wsmq.protocol.names.inbox_name`): what the consuming calls (receive, delete,
    change visibility, counts) accept."""
    if not isinstance(name, str):
        return validate_qname(name)
    qname, device = split_source(name)
    validate_qname(qname)
    if device is not None and device != GROUP:  # the plain subscribers' shared inbox
        validate_device(device)
    return name


def validate_id(msg_id: object) -> str:
    """Return ``msg_id`` if it matches RSMQ's ``^[a-zA-Z0-9:]{32}$``."""
    return _validate_name(msg_id, "id", ID_RE)


def _validate_range(value: object, item: str, lo: int, hi: int) -> int:
    number = js_parse_int(value)
    if number is None or number < lo or number > hi:
        raise InvalidValue(item, lo, hi)
    return number


def validate_vt(vt: object) -> int:
    """Visibility timeout in seconds: integer-parsed, 0..9999999."""
    return _validate_range(vt, "vt", 0, MAX_VT)


def validate_delay(delay: object) -> int:
    """Delivery delay in seconds: integer-parsed, 0..9999999."""
    return _validate_range(delay, "delay", 0, MAX_DELAY)


def validate_maxsize(maxsize: object) -> int:
    """Maximum message length: -1 (unlimited) or 1024..65536."""
    number = js_parse_int(maxsize)
    if number == -1:
        return -1
    if number is None or number < MIN_MAXSIZE or number > MAX_MAXSIZE:
        raise InvalidValue("maxsize", MIN_MAXSIZE, MAX_MAXSIZE)
    return number


def validate_max_receive_count(value: object) -> int:
    """wsmq extension: receives before dead-lettering, 0 (off) .. 9999999."""
    return _validate_range(value, "max_receive_count", 0, MAX_RECEIVE_COUNT)


def validate_message_ttl(value: object) -> int:
    """wsmq extension: message time-to-live in seconds, 0 (off) .. 9999999."""
    return _validate_range(value, "message_ttl", 0, MAX_TTL)


def validate_count(value: object) -> int:
    """Batch size for ``receive_messages``: 1..1000."""
    return _validate_range(value, "count", 1, MAX_BATCH)


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, i.e. JavaScript's ``string.length`` (RSMQ's maxsize unit)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def validate_message(message: object) -> bytes:
    """Return the UTF-8 encoding of ``message``.

    Raises ``MessageNotString`` for non-``str`` bodies and ``InvalidFormat`` ("Invalid message
    format") for strings that cannot be stored as UTF-8 (lone surrogates).
    """
    if not isinstance(message, str):
        raise MessageNotString()
    try:
        return message.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFormat("message") from None

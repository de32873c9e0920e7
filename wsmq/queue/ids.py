"""Message ids: base36 of Redis TIME in microseconds + 22 random ``[A-Za-z0-9]`` characters.

The time part is computed inside the Lua scripts (from ``redis.call('TIME')``); Python only
supplies the random suffix (from :mod:`secrets`, a CSPRNG, where RSMQ uses ``Math.random``).
"""

from __future__ import annotations

import secrets
import string

from wsmq.protocol.names import GENERATED_ID_PATTERN

__all__ = ["ID_ALPHABET", "ID_RE", "make_id", "random_suffix", "sent_ms", "to_base36"]

ID_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits
SUFFIX_LENGTH = 22
ID_RE = GENERATED_ID_PATTERN
_DIGITS36 = string.digits + string.ascii_lowercase


def random_suffix(length: int = SUFFIX_LENGTH) -> str:
    """``length`` characters of ``[A-Za-z0-9]`` from a CSPRNG."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def to_base36(number: int) -> str:
    """``Number(n).toString(36)`` for a non-negative integer."""
    if number < 0:
        raise ValueError("negative")
    out = []
    while True:
        number, digit = divmod(number, 36)
        out.append(_DIGITS36[digit])
        if number == 0:
            return "".join(reversed(out))


def make_id(seconds: int, microseconds: int, suffix: str | None = None) -> str:
    """Build an id as the Lua scripts do (pure; used by tests and docs)."""
    return to_base36(seconds * 1_000_000 + microseconds) + (suffix or random_suffix())


def sent_ms(msg_id: str) -> float:
    """RSMQ's ``sent``: ``parseInt(id.slice(0, 10), 36) / 1000`` (epoch ms, fractional)."""
    try:
        return int(msg_id[:10], 36) / 1000
    except ValueError:
        return 0.0

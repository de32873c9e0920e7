"""Password hashing with scrypt (``hashlib``), stored as a PHC-like string.

Format: ``$scrypt$ln=<log2 n>,r=<r>,p=<p>$<salt b64>$<hash b64>`` (unpadded standard base64).
Verification reads the parameters from the string, so the cost can be raised later without
invalidating existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

_PHC_RE = re.compile(
    r"^\$scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)\Z"
)
MAX_PASSWORD_BYTES = 1024
_SALT_BYTES = 16
_HASH_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # hashlib's default maxmem (32 MiB) is exactly what n=2**15, r=8 needs: leave headroom.
    maxmem = 130 * n * r * p + 2**24
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=_HASH_BYTES)


@dataclass(frozen=True)
class PasswordHasher:
    """scrypt parameters for new hashes (``n`` a power of two; 2**15 by default)."""

    n: int = 2**15
    r: int = 8
    p: int = 1

    def hash(self, password: str) -> str:
        """Hash ``password`` with a fresh random salt."""
        raw = _password_bytes(password)
        salt = os.urandom(_SALT_BYTES)
        digest = _scrypt(raw, salt, self.n, self.r, self.p)
        ln = self.n.bit_length() - 1
        return f"$scrypt$ln={ln},r={self.r},p={self.p}${_b64(salt)}${_b64(digest)}"


def _password_bytes(password: str) -> bytes:
    if not isinstance(password, str) or not password:
        raise ValueError("the password must be a non-empty string")
    raw = password.encode("utf-8")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return raw


def verify_password(
    password: str, encoded: str | None, dummy: PasswordHasher | None = None
) -> bool:
    """Whether ``password`` matches ``encoded`` (constant-time compare; False on any junk).

    With nothing valid to check against, ``dummy`` (default: the production cost) is run
    anyway so unknown users do not answer faster.
    """
    match = _PHC_RE.match(encoded or "")
    try:
        raw = _password_bytes(password)
    except ValueError:
        return False
    if match is None:
        # Same cost as a real check, so unknown users and bad hashes do not answer faster.
        (dummy or DUMMY).hash("dummy-password")
        return False
    ln, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not (1 <= ln <= 24 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    try:
        salt, expected = _unb64(match["salt"]), _unb64(match["hash"])
        actual = _scrypt(raw, salt, 2**ln, r, p)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


#: Used to burn comparable time when there is nothing to check against.
DUMMY = PasswordHasher()

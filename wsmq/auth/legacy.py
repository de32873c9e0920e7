"""Read access tokens made by the Node.js ``tokens2`` package (opt-in, for migration only).

tokens2 made access tokens with ``crypto.createCipher('aes-256-ctr', secret)`` over
``JSON.stringify({_id, password, timestamp})``, hex encoded. ``createCipher`` derives key and IV
with OpenSSL ``EVP_BytesToKey`` (MD5, one round, no salt), so every token shares one keystream:
anyone holding one token and its plaintext can forge others. wsmq only *reads* such tokens, and
only accepts one that is byte-for-byte the token stored on the user (``accessToken`` field).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wsmq.auth.errors import AuthError

_HEX_RE = re.compile(r"^(?:[0-9a-fA-F]{2}){8,4096}\Z")


def evp_bytes_to_key(secret: bytes, key_len: int = 32, iv_len: int = 16) -> tuple[bytes, bytes]:
    """OpenSSL ``EVP_BytesToKey`` with MD5, one round, no salt (what createCipher did)."""
    derived, block = b"", b""
    while len(derived) < key_len + iv_len:
        block = hashlib.md5(block + secret, usedforsecurity=False).digest()
        derived += block
    return derived[:key_len], derived[key_len : key_len + iv_len]


def _ctr(data: bytes, secret: str) -> bytes:
    key, iv = evp_bytes_to_key(secret.encode("utf-8"))
    cipher = Cipher(algorithms.AES(key), modes.CTR(iv))
    ctx = cipher.encryptor()  # CTR: encryption and decryption are the same operation
    return ctx.update(data) + ctx.finalize()


def encrypt_tokens2(payload: Mapping[str, object], secret: str) -> str:
    """Make a tokens2-style token (for tests and migration tooling only)."""
    return _ctr(json.dumps(payload, separators=(",", ":")).encode(), secret).hex()


def decrypt_tokens2(token: str, secret: str) -> dict[str, object]:
    """Decrypt a tokens2 access token to its JSON object; raises ``AuthError("malformed")``."""
    if not isinstance(token, str) or not _HEX_RE.match(token):
        raise AuthError("malformed", "not a tokens2 access token")
    try:
        data = json.loads(_ctr(bytes.fromhex(token), secret).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise AuthError("malformed", "not a tokens2 access token") from None
    if not isinstance(data, dict) or not isinstance(data.get("_id"), str):
        raise AuthError("malformed", "the tokens2 access token has no _id")
    return data


def tokens2_user_id(token: str, secret: str) -> str:
    """The ``_id`` inside a tokens2 access token."""
    return str(decrypt_tokens2(token, secret)["_id"])

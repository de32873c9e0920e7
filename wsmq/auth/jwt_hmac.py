"""A fast path for x-tokens signed with the node's own HMAC secret (HS256/384/512).

pyjwt's ``jwt.decode`` costs ~40 µs per token on the benchmark machine, most of it generic
work (a per-character alphabet check of every segment in Python, key preparation, option
merging), and every handshake pays it. :class:`HmacFastPath` checks the usual token —
header ``{"alg": <the configured algorithm>}`` with at most a ``typ`` besides, canonical
base64url segments, a JSON object payload — with the same primitives pyjwt uses (``hmac``,
``base64``, ``json``) in a few µs.

It only ever **accepts**: it returns the payload when the signature is the HMAC of the
configured key and every claim check pyjwt makes with wsmq's options passes (required claims
present; ``iat``, ``nbf``, ``exp`` integers and in range with the leeway; ``sub`` and ``jti``
strings when present). Anything else — another header, a signature that does not match
(a token of the previous secret, a forged one), a claim out of range, bad encoding — returns
``None`` and the caller asks pyjwt, which decides and names the error exactly as before. So
what is accepted is a subset of what pyjwt accepts, and every rejection is pyjwt's.

Not used with ``issuer`` or ``audience`` configured, with a JWKS or a public key, nor for a
key pyjwt itself refuses (:func:`pyjwt_accepts`), nor with fast paths switched off
(``WSMQ_FAST_PATHS=0``, the ``fast_paths`` setting).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import warnings
from typing import Final

import jwt

__all__ = ["HMAC_DIGESTS", "HmacFastPath", "pyjwt_accepts"]

HMAC_DIGESTS: Final = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_HEADER_KEYS: Final = frozenset({"alg", "typ"})
#: Distinct usual header segments remembered (tokens of one issuer share one or two).
_MAX_HEADERS: Final = 16


def pyjwt_accepts(key: str, algorithm: str) -> bool:
    """Whether pyjwt verifies a token of ``algorithm`` signed with ``key`` (it refuses some
    keys, e.g. a PEM-looking HMAC secret): the fast path must never accept what it refuses."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            now = int(time.time())
            token = jwt.encode({"sub": "probe", "iat": now, "exp": now + 60}, key, algorithm)
            jwt.decode(token, key, algorithms=[algorithm])
    except Exception:
        return False
    return True


def _segment(data: bytes) -> bytes | None:
    """The bytes of a canonical unpadded base64url segment, else ``None``."""
    try:
        decoded = base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != data:
        return None  # non-canonical (recent pyjwt refuses it): let pyjwt decide
    return decoded


def _int_claim(value: object) -> int | None:
    """``int(value)`` as pyjwt computes it for ``iat``/``nbf``/``exp``, or ``None``."""
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (ValueError, TypeError, OverflowError):
        return None


class HmacFastPath:
    """Accepts the usual HMAC-signed tokens of one key and algorithm (see the module doc)."""

    __slots__ = ("_digest", "_headers", "_key", "algorithm", "leeway", "required")

    def __init__(
        self, key: str, algorithm: str, *, required: tuple[str, ...], leeway: float
    ) -> None:
        if algorithm not in HMAC_DIGESTS:
            raise ValueError(f"not an HMAC algorithm: {algorithm}")
        self._key = key.encode("utf-8")  # what pyjwt's HMAC key preparation does with a str
        self._digest = HMAC_DIGESTS[algorithm]
        self.algorithm = algorithm
        self.required = required
        self.leeway = leeway
        #: Header segments already seen to be usual (decoding them once is enough).
        self._headers: set[bytes] = set()

    def _usual_header(self, segment: bytes) -> bool:
        if segment in self._headers:
            return True
        data = _segment(segment)
        if data is None:
            return False
        try:
            header = json.loads(data)
        except (ValueError, RecursionError):
            return False
        usual = (
            isinstance(header, dict)
            and header.keys() <= _HEADER_KEYS
            and header.get("alg") == self.algorithm
        )
        if usual and len(self._headers) < _MAX_HEADERS:
            self._headers.add(segment)
        return usual

    def accept(self, token: str) -> dict[str, object] | None:
        """The payload of ``token`` if this path can tell it is valid, else ``None`` (ask
        pyjwt). ``token`` has passed the x-token shape check (three base64url segments)."""
        raw = token.encode("ascii")
        signing_input, _, signature_segment = raw.rpartition(b".")
        header_segment, _, payload_segment = signing_input.partition(b".")
        if not self._usual_header(header_segment):
            return None
        signature = _segment(signature_segment)
        payload_data = _segment(payload_segment)
        if signature is None or payload_data is None:
            return None
        expected = hmac.new(self._key, signing_input, self._digest).digest()
        if not hmac.compare_digest(expected, signature):
            return None  # maybe the previous secret's, maybe forged: pyjwt decides and says
        try:
            payload = json.loads(payload_data)
        except (ValueError, RecursionError):
            return None
        if not isinstance(payload, dict) or not self._claims_ok(payload):
            return None
        return payload

    def _claims_ok(self, payload: dict[str, object]) -> bool:
        """pyjwt's claim checks with wsmq's options (no ``iss``/``aud``), all passing."""
        if any(payload.get(claim) is None for claim in self.required):
            return False
        now = time.time()
        leeway = self.leeway
        for claim in ("iat", "nbf"):
            if claim in payload:
                value = _int_claim(payload[claim])
                if value is None or value > now + leeway:
                    return False
        if "exp" in payload:
            exp = _int_claim(payload["exp"])
            if exp is None or exp <= now - leeway:
                return False
        for claim in ("sub", "jti"):
            if claim in payload and not isinstance(payload[claim], str):
                return False
        return True

"""Authentication settings (:class:`AuthConfig`), validated when built."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

log = logging.getLogger("wsmq.auth")

#: Algorithms wsmq accepts in configuration. The token's own ``alg`` header is never trusted.
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MAX_LEEWAY = 5.0
MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class AuthConfig:
    """How tokens are signed and checked.

    Attributes:
        secret: HMAC secret for the HS* algorithms (also the tokens2 cipher secret by default).
        algorithm: the one JWT algorithm accepted (``HS256``; ``RS256``, ``ES256``, ``EdDSA``
            and friends need ``public_key_file`` to verify and ``private_key_file`` to issue).
        ttl: lifetime of issued x-tokens in seconds (default 900 = 15 minutes).
        leeway: clock skew tolerated on ``exp``/``iat``/``nbf`` in seconds, at most 5.
        issuer, audience: when set, issued tokens carry them and verified tokens must match.
        previous_secret: the HMAC secret before a rotation; tokens signed with it are accepted
            until ``previous_secret_until`` (epoch seconds or an aware datetime).
        legacy_tokens2: accept access tokens made by the Node.js ``tokens2`` package (insecure;
            for migration only; logs a warning).
        legacy_secret: the tokens2 cipher secret when it differs from ``secret``.
        max_token_length: longer header values are rejected as ``malformed`` before parsing.
        scrypt_n: scrypt CPU/memory cost for new password hashes (a power of two).
        login_attempts_per_user, login_attempts_per_ip, login_window: login rate limits
            (attempts per sliding window in seconds).
    """

    secret: str | None = None
    algorithm: str = "HS256"
    ttl: int = 900
    leeway: float = 5.0
    issuer: str | None = None
    audience: str | None = None
    previous_secret: str | None = None
    previous_secret_until: float | datetime | None = None
    private_key_file: str | Path | None = None
    public_key_file: str | Path | None = None
    legacy_tokens2: bool = False
    legacy_secret: str | None = None
    max_token_length: int = 8192
    scrypt_n: int = 2**15
    login_attempts_per_user: int = 10
    login_attempts_per_ip: int = 50
    login_window: float = 60.0

    def __post_init__(self) -> None:
        if self.algorithm in HMAC_ALGORITHMS:
            if not self.secret:
                raise ValueError(f"{self.algorithm} needs a secret (--secret / WSMQ_SECRET)")
            if len(self.secret.encode()) < MIN_SECRET_BYTES:
                log.warning(
                    "the JWT secret is shorter than %d bytes; use a long random secret",
                    MIN_SECRET_BYTES,
                )
        elif self.algorithm in ASYMMETRIC_ALGORITHMS:
            if self.public_key_file is None and self.private_key_file is None:
                raise ValueError(f"{self.algorithm} needs public_key_file and/or private_key_file")
        else:
            raise ValueError(f"unsupported JWT algorithm {self.algorithm!r}")
        if not 0 <= self.leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")
        if self.ttl <= 0:
            raise ValueError("ttl must be positive")
        if self.max_token_length < 64:
            raise ValueError("max_token_length is too small")
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise ValueError("scrypt_n must be a power of two")
        if self.previous_secret is not None and self.previous_secret_until is None:
            raise ValueError("previous_secret needs previous_secret_until (end of the window)")
        if self.legacy_tokens2:
            if not (self.legacy_secret or self.secret):
                raise ValueError("legacy_tokens2 needs legacy_secret or secret")
            log.warning(
                "legacy tokens2 access tokens are accepted: they are malleable and reveal "
                "passwords; turn legacy_tokens2 off once clients have migrated"
            )

    @property
    def previous_until_epoch(self) -> float | None:
        """``previous_secret_until`` as epoch seconds."""
        until = self.previous_secret_until
        if isinstance(until, datetime):
            return until.timestamp()
        return None if until is None else float(until)

    @property
    def is_hmac(self) -> bool:
        """Whether the configured algorithm is an HMAC one (shared secret)."""
        return self.algorithm in HMAC_ALGORITHMS

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
        jwks_url: an identity provider's JWKS (``https://idp.example.com/.well-known/jwks.json``):
            tokens whose header names a ``kid`` are checked with that key, its algorithm pinned
            by its type (RSA: RS256, EC P-256: ES256, P-384: ES384, P-521: ES512, Ed25519:
            EdDSA). Without a secret or key files the node only verifies: it issues nothing.
        jwks_min_refetch_interval: a token naming an unknown ``kid`` re-fetches the JWKS at most
            once per this many seconds (also the retry pace while the JWKS is unreachable).
        jwks_cache_ttl: the JWKS is re-fetched in the background when older than this.
        jwks_allow_http: accept an ``http://`` JWKS URL on a host other than loopback.
        jwks_timeout: seconds one JWKS fetch may take.
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
    jwks_url: str | None = None
    jwks_min_refetch_interval: float = 60.0
    jwks_cache_ttl: float = 600.0
    jwks_allow_http: bool = False
    jwks_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.algorithm not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {self.algorithm!r}")
        if not self.has_own_key and self.jwks_url is None:
            if self.is_hmac:
                raise ValueError(f"{self.algorithm} needs a secret (--secret / WSMQ_SECRET)")
            raise ValueError(f"{self.algorithm} needs public_key_file and/or private_key_file")
        if self.is_hmac and self.secret and len(self.secret.encode()) < MIN_SECRET_BYTES:
            log.warning(
                "the JWT secret is shorter than %d bytes; use a long random secret",
                MIN_SECRET_BYTES,
            )
        if self.jwks_url is not None:
            from wsmq.auth.jwks import check_jwks_url

            check_jwks_url(self.jwks_url, allow_http=self.jwks_allow_http)
            if not 0 < self.jwks_min_refetch_interval <= 86_400:
                raise ValueError("jwks_min_refetch_interval must be in (0, 86400] seconds")
            if not self.jwks_min_refetch_interval <= self.jwks_cache_ttl <= 7 * 86_400:
                raise ValueError(
                    "jwks_cache_ttl must be at least jwks_min_refetch_interval and at most a week"
                )
            if not 0 < self.jwks_timeout <= 60:
                raise ValueError("jwks_timeout must be in (0, 60] seconds")
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
    def has_own_key(self) -> bool:
        """Whether the node has a key of its own (the secret, or PEM files for ``algorithm``):
        without one it only verifies tokens from ``jwks_url``."""
        if self.is_hmac:
            return bool(self.secret)
        return self.public_key_file is not None or self.private_key_file is not None

    @property
    def can_issue(self) -> bool:
        """Whether the node can sign x-tokens (the secret, or a private key file)."""
        return bool(self.secret) if self.is_hmac else self.private_key_file is not None

    @property
    def is_hmac(self) -> bool:
        """Whether the configured algorithm is an HMAC one (shared secret)."""
        return self.algorithm in HMAC_ALGORITHMS

"""x-token (JWT) signing and checking, and access-token generation and hashing.

Pure functions over :class:`~wsmq.auth.config.AuthConfig`; no I/O except reading PEM key files
once per configuration and, with ``jwks_url``, fetching the JWKS (:mod:`wsmq.auth.jwks`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
import re
import secrets
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

import jwt

from wsmq._compat import allowed as fast_paths_allowed
from wsmq.auth.config import AuthConfig
from wsmq.auth.errors import AuthError
from wsmq.auth.jwt_hmac import HmacFastPath, pyjwt_accepts
from wsmq.auth.keys import PublicKey, VerificationKey, load_public_pem

if TYPE_CHECKING:
    from jwt.types import Options

    from wsmq.auth.jwks import JwksCache

#: Claims every x-token must carry.
REQUIRED_CLAIMS = ("sub", "iat", "exp")
SUBJECT_PREFIX = "users/"
_USER_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}\Z")
# Three base64url segments; anything else is rejected before pyjwt sees it.
_JWT_SHAPE_RE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\Z")
_ACCESS_TOKEN_RE = re.compile(r"^[\x21-\x7e]+\Z")


@dataclass(frozen=True)
class TokenClaims:
    """The checked claims of an x-token."""

    user_id: str
    exp: float
    iat: float


@dataclass(frozen=True)
class IssuedTokens:
    """What a login hands out. ``access_token`` is shown once and stored only as a hash."""

    token: str
    access_token: str | None
    expires_in: int
    user_id: str | None = None

    def to_json(self) -> dict[str, str | int]:
        """The ``/auth/login`` body: ``{"token", "accessToken", "expiresIn", "userId"}``."""
        body: dict[str, str | int] = {"token": self.token, "expiresIn": self.expires_in}
        if self.access_token is not None:
            body["accessToken"] = self.access_token
        if self.user_id is not None:
            body["userId"] = self.user_id
        return body


# ---------------------------------------------------------------------------------------------
# access tokens


def new_access_token() -> str:
    """A fresh access token: 32 random bytes (256 bits), URL-safe base64 (43 characters).

    Never starts with ``-``, so it can follow an option on a command line
    (``--access-token TOKEN``); redrawing the 1 in 64 that would costs 0.02 bits.
    """
    return cli_safe_token(32)


def cli_safe_token(nbytes: int) -> str:
    """``secrets.token_urlsafe(nbytes)`` that does not start with ``-`` (argparse would take it
    for an option)."""
    while True:
        token = secrets.token_urlsafe(nbytes)
        if not token.startswith("-"):
            return token


def hash_access_token(token: str) -> str:
    """SHA-256 hex of an access token: what the user document stores."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def access_token_matches(token: str, stored_hash: str | None) -> bool:
    """Constant-time check of a presented access token against the stored hash."""
    if not stored_hash:
        # Still do the work so a missing hash is not distinguishable by timing.
        hmac.compare_digest(hash_access_token(token), "0" * 64)
        return False
    return hmac.compare_digest(hash_access_token(token), stored_hash)


def check_header_value(value: object, config: AuthConfig, what: str) -> str:
    """Validate a raw header value: present, text, bounded, printable ASCII."""
    if value is None or value == "" or value == b"":
        raise AuthError("missing", f"{what} is missing")
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise AuthError("malformed", f"{what} is not ASCII") from None
    if not isinstance(value, str):
        raise AuthError("malformed", f"{what} is not a string")
    if len(value) > config.max_token_length:
        raise AuthError("malformed", f"{what} is too long")
    value = value.strip()
    if not value:
        raise AuthError("missing", f"{what} is missing")
    if not _ACCESS_TOKEN_RE.match(value):
        raise AuthError("malformed", f"{what} contains invalid characters")
    return value


# ---------------------------------------------------------------------------------------------
# JWT


def user_id_from_subject(sub: object) -> str:
    """``users/<id>`` (tokens2's format) or a bare ``<id>`` -> ``<id>``."""
    if not isinstance(sub, str):
        raise AuthError("invalid_claims", "sub must be a string")
    user_id = sub.removeprefix(SUBJECT_PREFIX)
    if not _USER_ID_RE.match(user_id):
        raise AuthError("invalid_claims", "sub is not a valid user id")
    return user_id


def _read_key(path: str | Path | None) -> str | None:
    return None if path is None else Path(path).read_text()


# pyjwt >= 2.10 also checks that ``sub``/``jti`` are strings.
_CLAIM_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(jwt.exceptions, name)
    for name in (
        "MissingRequiredClaimError",
        "InvalidIssuerError",
        "InvalidAudienceError",
        "InvalidIssuedAtError",
        "InvalidSubjectError",
        "InvalidJTIError",
    )
    if hasattr(jwt.exceptions, name)
)


class JwtCodec:
    """Signs and checks x-tokens for one configuration (keys loaded once).

    Which key checks a token: with ``jwks_url`` configured, a token whose header names a
    ``kid`` is checked with that JWKS key; every other token with the node's own key (the
    secret, or the PEM public key). Each key verifies only its own algorithm.
    """

    def __init__(self, config: AuthConfig, *, jwks: JwksCache | None = None) -> None:
        """``jwks`` replaces the cache built from ``config.jwks_url`` (tests pass one with
        their own clock)."""
        self.config = config
        self._own_key: VerificationKey | str | None = None
        if config.is_hmac:
            self._signing_key: str | None = config.secret
            self._own_key = config.secret
        else:
            self._signing_key = _read_key(config.private_key_file)
            pem = config.public_key_file or config.private_key_file
            if pem is not None:
                self._own_key = load_public_pem(pem, config.algorithm)
        #: The own secret's fast path (:mod:`wsmq.auth.jwt_hmac`): pyjwt still decides every
        #: token it does not accept. Not with ``iss``/``aud`` checks (pyjwt's alone).
        self._fast: HmacFastPath | None = None
        if (
            config.is_hmac
            and config.secret
            and config.issuer is None
            and config.audience is None
            and pyjwt_accepts(config.secret, config.algorithm)
        ):
            self._fast = HmacFastPath(
                config.secret, config.algorithm, required=REQUIRED_CLAIMS, leeway=config.leeway
            )
        self.jwks = jwks
        if jwks is None and config.jwks_url is not None:
            from wsmq.auth.jwks import JwksCache

            self.jwks = JwksCache(
                config.jwks_url,
                min_refetch_interval=config.jwks_min_refetch_interval,
                ttl=config.jwks_cache_ttl,
                timeout=config.jwks_timeout,
            )

    @property
    def can_issue(self) -> bool:
        """Whether this node can sign x-tokens (the secret or a private key)."""
        return self._signing_key is not None

    def issue(
        self, user_id: str, *, ttl: int | None = None, now: float | None = None
    ) -> tuple[str, int]:
        """Sign an x-token for ``user_id``; returns ``(token, expires_in)``."""
        if self._signing_key is None:
            raise ValueError(
                "no signing key configured (a secret or private_key_file): this node only "
                "verifies tokens"
            )
        try:
            user_id_from_subject(user_id)
        except AuthError:
            raise ValueError(f"not a valid user id: {user_id!r}") from None
        ttl = self.config.ttl if ttl is None else int(ttl)
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        issued = int(time.time() if now is None else now)
        payload: dict[str, object] = {
            "sub": SUBJECT_PREFIX + user_id,
            "iat": issued,
            "exp": issued + ttl,
        }
        if self.config.issuer is not None:
            payload["iss"] = self.config.issuer
        if self.config.audience is not None:
            payload["aud"] = self.config.audience
        with warnings.catch_warnings():
            # Short secrets are already reported once by AuthConfig.
            warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
            token = jwt.encode(payload, self._signing_key, algorithm=self.config.algorithm)
        return token, ttl

    def verify(self, token: object, *, now: float | None = None) -> TokenClaims:
        """Check an x-token with the keys at hand and return its claims, or raise
        :class:`AuthError`. Never waits: a JWKS ``kid`` not cached yet is ``invalid_signature``
        (:meth:`verify_async` fetches it)."""
        value, kid = self._parse(token)
        return self._verify(value, kid, now)

    async def verify_async(self, token: object, *, now: float | None = None) -> TokenClaims:
        """:meth:`verify`, fetching the JWKS first when the token names a key not cached yet
        (at most once per ``jwks_min_refetch_interval``)."""
        value, kid = self._parse(token)
        if self._uses_jwks(kid):
            assert self.jwks is not None
            await self.jwks.key_for(kid)
        return self._verify(value, kid, now)

    def _parse(self, token: object) -> tuple[str, str | None]:
        value = check_header_value(token, self.config, "x-token")
        if not _JWT_SHAPE_RE.match(value):
            raise AuthError("malformed", "x-token is not a JWT")
        if self.jwks is None:
            return value, None
        try:
            kid = jwt.get_unverified_header(value).get("kid")
        except Exception:  # any parser surprise on hostile input is a bad token
            raise AuthError("malformed") from None
        if kid is not None and not (isinstance(kid, str) and 0 < len(kid) <= 256):
            raise AuthError("malformed", "the token's kid is not a short string")
        return value, kid

    def _uses_jwks(self, kid: str | None) -> bool:
        return self.jwks is not None and (kid is not None or self._own_key is None)

    def _verify(self, value: str, kid: str | None, now: float | None) -> TokenClaims:
        if self._uses_jwks(kid):
            assert self.jwks is not None
            jwk = self.jwks.cached(kid)
            if jwk is None:
                what = "the token names no key" if kid is None else "the token's key is unknown"
                raise AuthError("invalid_signature", what)
            return self._claims(self._decode(value, jwk.key, jwk.algorithm), now)
        own = self._own_key
        if own is None:
            raise AuthError("invalid_signature", "no verification key configured")
        fast = self._fast
        if fast is not None and fast_paths_allowed():
            payload = fast.accept(value)
            if payload is not None:
                return self._claims(payload, now)
        key: str | PublicKey = own if isinstance(own, str) else own.key
        algorithm = self.config.algorithm if isinstance(own, str) else own.algorithm
        try:
            payload = self._decode(value, key, algorithm)
        except AuthError as exc:
            if exc.reason != "invalid_signature" or not self._previous_valid(now):
                raise
            assert self.config.previous_secret is not None
            payload = self._decode(value, self.config.previous_secret, algorithm)
        return self._claims(payload, now)

    def _previous_valid(self, now: float | None) -> bool:
        until = self.config.previous_until_epoch
        if not (self.config.is_hmac and self.config.previous_secret and until is not None):
            return False
        return (time.time() if now is None else now) < until

    def _decode(self, token: str, key: str | PublicKey, algorithm: str) -> dict[str, object]:
        cfg = self.config
        required = list(REQUIRED_CLAIMS)
        required += ["iss"] if cfg.issuer is not None else []
        required += ["aud"] if cfg.audience is not None else []
        options: Options = {
            "require": required,
            "verify_aud": cfg.audience is not None,
            "verify_iss": cfg.issuer is not None,
        }
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                payload: dict[str, object] = jwt.decode(
                    token,
                    key,
                    algorithms=[algorithm],
                    options=options,
                    leeway=cfg.leeway,
                    issuer=cfg.issuer,
                    audience=cfg.audience,
                )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("not_yet_valid") from None
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
            raise AuthError("invalid_signature") from None
        except _CLAIM_ERRORS as exc:
            raise AuthError("invalid_claims", f"the token claims are not valid: {exc}") from None
        except jwt.InvalidTokenError:
            raise AuthError("malformed") from None
        except Exception:  # any parser surprise on hostile input is still a bad token
            raise AuthError("malformed") from None
        return payload

    def _claims(self, payload: Mapping[str, object], now: float | None) -> TokenClaims:
        exp, iat = payload.get("exp"), payload.get("iat")
        if not _is_number(exp) or not _is_number(iat):
            raise AuthError("invalid_claims", "exp and iat must be numbers")
        assert isinstance(exp, int | float) and isinstance(iat, int | float)
        current = time.time() if now is None else now
        # pyjwt checks against the wall clock; an explicit ``now`` (tests, replays) is re-checked.
        if exp <= current - self.config.leeway:
            raise AuthError("expired")
        if iat > current + self.config.leeway:
            raise AuthError("not_yet_valid")
        nbf = payload.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > current + self.config.leeway):
            raise AuthError("not_yet_valid")
        return TokenClaims(user_id=user_id_from_subject(payload["sub"]), exp=exp, iat=iat)


def _is_number(value: object) -> TypeGuard[int | float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond any float (exp = 10**400): not a usable time
        return False


@functools.lru_cache(maxsize=32)
def codec_for(config: AuthConfig) -> JwtCodec:
    """The (cached) codec of a configuration."""
    return JwtCodec(config)


def issue_jwt(user_id: str, config: AuthConfig, *, ttl: int | None = None) -> tuple[str, int]:
    """Sign an x-token for ``user_id``: ``(token, expires_in)``."""
    return codec_for(config).issue(user_id, ttl=ttl)


def verify_jwt(token: object, config: AuthConfig) -> TokenClaims:
    """Check an x-token; raises :class:`AuthError`."""
    return codec_for(config).verify(token)

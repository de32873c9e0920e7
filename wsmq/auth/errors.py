"""Typed authentication errors.

Every rejection the auth layer produces is an :class:`AuthError` with a machine-readable
``reason`` (also the ``error`` code of HTTP JSON bodies), an HTTP ``status`` and a human message.
Callers never need to catch pyjwt, cryptography or JSON exceptions.
"""

from __future__ import annotations

from typing import Final

from wsmq.errors import WsmqError

#: reason -> (HTTP status, default message)
REASONS: Final[dict[str, tuple[int, str]]] = {
    "missing": (401, "authentication tokens are missing"),
    "malformed": (401, "the token is malformed"),
    "expired": (401, "the token has expired"),
    "not_yet_valid": (401, "the token is not valid yet"),
    "invalid_signature": (401, "the token signature is not valid"),
    "invalid_claims": (401, "the token claims are not valid"),
    "unknown_user": (401, "unknown user"),
    "access_token_mismatch": (401, "the access token is not valid for this user"),
    # Every failure that depends on a user record (unknown user, wrong password, wrong access
    # token) on every endpoint: one answer, so it does not tell whether the user exists.
    "invalid_credentials": (401, "invalid credentials"),
    "disabled": (403, "the user is disabled"),
    "rate_limited": (429, "too many attempts, try again later"),
    "bad_request": (400, "bad request"),
    "unavailable": (503, "the user store is unavailable"),
}


class AuthError(WsmqError, code="auth_error"):
    """An authentication failure.

    Attributes:
        reason: machine-readable code, one of :data:`REASONS` (``expired``, ``malformed``, ...).
        status: HTTP status to answer with: 401, 403 for ``disabled``, 429, 400.
        message: human-readable text; never contains token material.
        retry_after: for ``rate_limited``, seconds until a retry may succeed.
    """

    def __init__(
        self,
        reason: str,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        default_status, default_message = REASONS.get(reason, (401, reason))
        self.retry_after = retry_after
        self.reason = reason
        self.status = status if status is not None else default_status
        super().__init__(message or default_message, code=reason)

    def __repr__(self) -> str:
        return f"AuthError(reason={self.reason!r}, status={self.status}, message={self.message!r})"

    def to_json(self) -> dict[str, str]:
        """The JSON error body ``{"error": reason, "message": ...}``."""
        return {"error": self.reason, "message": self.message}


class JwksError(WsmqError, code="jwks_error"):
    """The JWKS of the identity provider could not be fetched or used.

    Raised by :meth:`wsmq.auth.jwks.JwksCache.refresh`; a node verifying tokens logs it once per
    outage and keeps the keys it already has (tokens naming an unknown key are then refused
    with ``AuthError("invalid_signature")``).

    Attributes:
        url: the JWKS URL (it holds no credentials: configuration refuses ``user:pass@``).
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"JWKS {url}: {message}")
        self.url = url


class UserStoreError(WsmqError, code="user_store_error"):
    """A user store failed or was asked something impossible."""


class UserExists(UserStoreError, code="user_exists"):
    """A user with this name already exists."""


class UserNotFound(UserStoreError, code="user_not_found"):
    """No such user."""


class InvalidUserData(UserStoreError, ValueError, code="invalid_user_data"):
    """A user name, password or queue list is not acceptable."""

"""The :class:`Authenticator`: checks the two handshake tokens against a user store."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field

from wsmq.auth.config import AuthConfig
from wsmq.auth.errors import AuthError
from wsmq.auth.legacy import tokens2_user_id
from wsmq.auth.passwords import PasswordHasher, verify_password
from wsmq.auth.recent_users import RecentUsers
from wsmq.auth.tokens import (
    IssuedTokens,
    JwtCodec,
    TokenClaims,
    access_token_matches,
    check_header_value,
    codec_for,
    hash_access_token,
)
from wsmq.auth.users import User, UserStore

log = logging.getLogger("wsmq.auth")


@dataclass(frozen=True)
class AuthenticatedUser:
    """Who is on the other end of a connection, and what they may do.

    Attributes:
        user_id, user_name: the user.
        queues: queues the user may subscribe to besides its own id.
        publish: queues the user may send to.
        token_exp: the x-token's ``exp`` (epoch seconds): the connection expires then.
        access_revision: the SHA-256 hex of the access token presented: the connection lasts
            only while the store still holds that token (see :meth:`Authenticator.check_access`).
    """

    user_id: str
    user_name: str
    queues: tuple[str, ...]
    publish: tuple[str, ...]
    token_exp: float
    access_revision: str | None = field(default=None, repr=False, compare=False)


#: Reasons of :meth:`Authenticator.check_access` meaning the access itself is gone (as opposed
#: to the store being unreachable, or a bad x-token).
REVOKED_REASONS = frozenset({"unknown_user", "disabled", "access_token_mismatch"})


def access_revision(user: object) -> str | None:
    """The access-token revision a connection's user was authenticated with (``None`` for a
    user from a host app's ``authenticate`` hook, which has no access token)."""
    revision = getattr(user, "access_revision", None)
    return revision if isinstance(revision, str) else None


class Authenticator:
    """Verify and issue tokens for one configuration and one user store.

    Args:
        config: the :class:`AuthConfig`.
        store: any :class:`UserStore`.
    """

    #: How long ``/refresh`` may rely on a store read (a disable is seen this much later).
    RECENT_USER_TTL = 1.0

    def __init__(self, config: AuthConfig, store: UserStore) -> None:
        self.config = config
        self.store = store
        # A JWKS cache is per authenticator (it runs tasks on this node's loop), not shared.
        self.codec = JwtCodec(config) if config.jwks_url else codec_for(config)
        self._dummy = PasswordHasher(n=config.scrypt_n)
        self._recent = RecentUsers(self._fetch, ttl=self.RECENT_USER_TTL)

    def verify_jwt(self, x_token: object) -> TokenClaims:
        """Check an x-token alone with the keys at hand; raises :class:`AuthError`.

        Never waits: with ``jwks_url``, a key not cached yet is ``invalid_signature``; use
        :meth:`check_jwt` in async code.
        """
        return self.codec.verify(x_token)

    async def check_jwt(self, x_token: object) -> TokenClaims:
        """Check an x-token alone (for ``/refresh``), fetching the JWKS when the token names a
        key not cached yet; raises :class:`AuthError`."""
        return await self.codec.verify_async(x_token)

    @property
    def can_issue(self) -> bool:
        """Whether this node signs x-tokens (``/auth/login``, ``/auth/token``, :meth:`issue_tokens`
        need it): false when it only verifies tokens from ``jwks_url`` or a public key."""
        return self.codec.can_issue

    def prefetch(self) -> None:
        """With ``jwks_url``: start fetching the JWKS in the background (node start)."""
        if self.codec.jwks is not None:
            self.codec.jwks.prefetch()

    async def aclose(self) -> None:
        """Stop a JWKS fetch in flight (the node is stopping)."""
        if self.codec.jwks is not None:
            await self.codec.jwks.aclose()

    def issue_jwt(self, user_id: str, ttl: int | None = None) -> tuple[str, int]:
        """Sign a new x-token: ``(token, expires_in)``."""
        return self.codec.issue(user_id, ttl=ttl)

    async def _fetch(self, user_id: object = None, user_name: object = None) -> User | None:
        """The user by id, else by name, or None; a failing store is ``unavailable`` (503)."""
        try:
            if isinstance(user_id, str) and user_id:
                return await self.store.get(user_id)
            if isinstance(user_name, str) and user_name:
                return await self.store.get_by_name(user_name)
        except AuthError:
            raise
        except Exception as exc:
            log.error("user store failed: %s", type(exc).__name__)
            raise AuthError("unavailable", "the user store is unavailable", status=503) from None
        return None

    async def _load(self, user_id: str) -> User:
        user = await self._fetch(user_id)
        if user is None:
            raise AuthError("unknown_user")
        if user.disabled:
            raise AuthError("disabled")
        return user

    def _holder(self, user: User | None, access_token: str) -> tuple[User, str]:
        """``user`` if ``access_token`` is its current one, with the token's revision (its
        SHA-256 hex: :attr:`AuthenticatedUser.access_revision`); else ``invalid_credentials``.

        An unknown user costs the same hashing and gets the same answer as a wrong token, so
        the answer does not tell whether the user exists.
        """
        if user is None:
            access_token_matches(access_token, None)
            raise AuthError("invalid_credentials")
        return user, self._check_access_token(user, access_token)

    def _check_access_token(self, user: User, access_token: str) -> str:
        stored = user.access_token_hash
        if access_token_matches(access_token, stored) and stored:
            return stored  # the store's own string: no second hash, shared by the user's sockets
        if self.config.legacy_tokens2 and self._legacy_matches(user, access_token):
            return hash_access_token(access_token)
        raise AuthError("invalid_credentials")

    def access_current(self, user: User, revision: str) -> bool:
        """Whether the access token whose hash is ``revision`` is still ``user``'s."""
        stored = user.access_token_hash
        if stored and hmac.compare_digest(stored.encode(), revision.encode()):
            return True
        legacy = user.legacy_access_token if self.config.legacy_tokens2 else None
        return legacy is not None and hmac.compare_digest(
            hash_access_token(legacy).encode(), revision.encode()
        )

    def revoked_reason(self, user: User | None, revision: str | None) -> str | None:
        """Why a connection authenticated with access-token ``revision`` (:func:`access_revision`)
        must end, given its user as now stored (``None``: not in the store); ``None`` if it may
        go on. A connection without a revision (a host hook's user, which need not be in the
        store) ends only when the store has its user disabled.
        """
        if user is None:
            return None if revision is None else "unknown_user"
        if user.disabled:
            return "disabled"
        if revision is not None and not self.access_current(user, revision):
            return "access_token_mismatch"
        return None

    async def check_access(self, user_id: str, revision: str | None) -> None:
        """For ``/refresh``: raise :class:`AuthError` if :meth:`revoked_reason` says the
        connection must end (reasons in :data:`REVOKED_REASONS`), or ``unavailable``.

        A store read up to :attr:`RECENT_USER_TTL` seconds old may answer.
        """
        reason = self.revoked_reason(await self._recent.get(user_id), revision)
        if reason == "access_token_mismatch":
            raise AuthError(reason, "the access token was revoked")
        if reason is not None:
            raise AuthError(reason)

    def _legacy_matches(self, user: User, access_token: str) -> bool:
        secret = self.config.legacy_secret or self.config.secret or ""
        try:
            token_user = tokens2_user_id(access_token, secret)
        except AuthError:
            return False
        stored = user.legacy_access_token
        ok = (
            stored is not None
            and hmac.compare_digest(access_token.encode(), stored.encode())
            and hmac.compare_digest(token_user.encode(), user.id.encode())
        )
        if ok:
            log.warning("accepted a legacy tokens2 access token for user %s", user.id)
        return ok

    async def verify(self, x_token: object, x_access_token: object) -> AuthenticatedUser:
        """Check both handshake tokens; returns the user or raises :class:`AuthError`."""
        codec = self.codec
        # Without a JWKS nothing is fetched: skip a coroutine on the handshake's hot path.
        claims = codec.verify(x_token) if codec.jwks is None else await codec.verify_async(x_token)
        access_token = check_header_value(x_access_token, self.config, "x-access-token")
        user = await self._fetch(claims.user_id)
        if user is not None and user.disabled:
            raise AuthError("disabled")  # told only to the holder of a valid x-token
        user, revision = self._holder(user, access_token)
        return AuthenticatedUser(
            user_id=user.id,
            user_name=user.user_name,
            queues=user.queues,
            publish=user.publish,
            token_exp=claims.exp,
            access_revision=revision,
        )

    async def find_user(self, user_id: object = None, user_name: object = None) -> User:
        """Look a user up by id or name (exactly one); disabled users raise ``disabled``."""
        if isinstance(user_id, str) and user_id:
            return await self._load(user_id)
        if isinstance(user_name, str) and user_name:
            user = await self.store.get_by_name(user_name)
            if user is None:
                raise AuthError("unknown_user")
            return await self._load(user.id)
        raise AuthError("bad_request", "userId or userName is required")

    async def issue_tokens(self, user: User | str) -> IssuedTokens:
        """Rotate the user's access token and sign an x-token: both shown once."""
        user_id = user if isinstance(user, str) else user.id
        if not self.can_issue:  # before the rotation: the current access token must survive
            raise ValueError("no signing key configured: this node only verifies x-tokens")
        access_token = await self.store.set_access_token(user_id)
        token, expires_in = self.codec.issue(user_id)
        return IssuedTokens(
            token=token, access_token=access_token, expires_in=expires_in, user_id=user_id
        )

    async def login(self, user_name: str, password: str) -> IssuedTokens:
        """Check a password and issue tokens (replacing the user's previous access token)."""
        user = await self._fetch(user_name=user_name)
        ok = await asyncio.to_thread(
            verify_password, password, user.password_hash if user else None, self._dummy
        )
        if user is None or not ok:
            raise AuthError("invalid_credentials")
        if user.disabled:
            raise AuthError("disabled")
        return await self.issue_tokens(user)

    async def _token_holder(self, access_token: object, user_id: object, user_name: object) -> User:
        """The user named by id or name whose current access token this is (token, logout).

        Unknown user and wrong token are the same ``invalid_credentials``; ``disabled`` is only
        told to the holder of the valid access token.
        """
        token = check_header_value(access_token, self.config, "x-access-token")
        if not any(isinstance(ref, str) and ref for ref in (user_id, user_name)):
            raise AuthError("bad_request", "userId or userName is required")
        user, _ = self._holder(await self._fetch(user_id, user_name), token)
        if user.disabled:
            raise AuthError("disabled")
        return user

    async def token_for(
        self, access_token: object, *, user_id: object = None, user_name: object = None
    ) -> IssuedTokens:
        """A fresh x-token for the holder of a valid access token (``/auth/token``)."""
        user = await self._token_holder(access_token, user_id, user_name)
        jwt_token, expires_in = self.codec.issue(user.id)
        return IssuedTokens(
            token=jwt_token, access_token=None, expires_in=expires_in, user_id=user.id
        )

    async def logout(
        self, access_token: object, *, user_id: object = None, user_name: object = None
    ) -> User:
        """Revoke the access token (which must be valid); returns the user."""
        user = await self._token_holder(access_token, user_id, user_name)
        await self.store.clear_access_token(user.id)
        return user


async def issue_tokens(user: User | str, config: AuthConfig, store: UserStore) -> IssuedTokens:
    """Issue an x-token and a new access token for ``user`` (no server needed)."""
    return await Authenticator(config, store).issue_tokens(user)


async def verify_tokens(
    x_token: object, x_access_token: object, *, config: AuthConfig, store: UserStore
) -> AuthenticatedUser:
    """Check both tokens (no server needed); raises :class:`AuthError`."""
    return await Authenticator(config, store).verify(x_token, x_access_token)

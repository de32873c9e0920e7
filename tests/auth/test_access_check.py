"""Authenticator.revoked_reason / check_access: when a live connection's access is gone."""

from __future__ import annotations

import pytest

from wsmq.auth import AuthConfig, Authenticator, AuthError, FileUserStore, hash_access_token


async def test_revoked_reason_follows_the_stored_access_token(
    cfg: AuthConfig, file_store: FileUserStore
) -> None:
    auth = Authenticator(cfg, file_store)
    user, token = await file_store.create("alice", "password-123")
    revision = hash_access_token(token)
    current = await file_store.get(user.id)
    assert auth.revoked_reason(current, revision) is None
    assert auth.revoked_reason(current, hash_access_token("another")) == "access_token_mismatch"
    assert auth.revoked_reason(None, revision) == "unknown_user"
    # A host hook's user has no access token and need not be in the store at all.
    assert auth.revoked_reason(None, None) is None
    assert auth.revoked_reason(current, None) is None
    await file_store.set_disabled(user.id)
    disabled = await file_store.get(user.id)
    assert auth.revoked_reason(disabled, None) == "disabled"
    assert auth.revoked_reason(disabled, revision) == "disabled"


async def test_check_access_sees_a_store_change_within_the_cache_ttl(
    cfg: AuthConfig, file_store: FileUserStore
) -> None:
    auth = Authenticator(cfg, file_store)
    user, token = await file_store.create("bob", "password-123")
    await auth.check_access(user.id, hash_access_token(token))
    await file_store.clear_access_token(user.id)
    auth._recent.forget(user.id)  # what RECENT_USER_TTL seconds of waiting would do
    with pytest.raises(AuthError) as err:
        await auth.check_access(user.id, hash_access_token(token))
    assert err.value.reason == "access_token_mismatch"
    assert Authenticator.RECENT_USER_TTL <= 2.0

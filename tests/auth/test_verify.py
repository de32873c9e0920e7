"""Both handshake tokens checked against every user store, and hostile input never crashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsmq.auth import (
    AuthConfig,
    Authenticator,
    AuthError,
    UserStore,
    issue_jwt,
    issue_tokens,
    verify_tokens,
)
from wsmq.auth.tokens import hash_access_token

from .conftest import SECRET


async def reason(auth: Authenticator, x_token: object, x_access_token: object) -> str:
    with pytest.raises(AuthError) as info:
        await auth.verify(x_token, x_access_token)
    return info.value.reason


async def test_fresh_pair_is_accepted(store: UserStore, cfg: AuthConfig) -> None:
    user, access_token = await store.create("alice", "pw", ["news"], ["chat"])
    token, _ = issue_jwt(user.id, cfg)
    got = await verify_tokens(token, access_token, config=cfg, store=store)
    assert (got.user_id, got.user_name) == (user.id, "alice")
    assert got.queues == ("news",) and got.publish == ("chat",)
    assert got.token_exp == pytest.approx(time.time() + 900, abs=5)


async def test_issue_tokens_helper_rotates_access_token(store: UserStore, cfg: AuthConfig) -> None:
    user, first = await store.create("alice", "pw")
    issued = await issue_tokens(user, cfg, store)
    assert issued.expires_in == 900 and issued.access_token != first
    assert (await verify_tokens(issued.token, issued.access_token, config=cfg, store=store)).user_id
    auth = Authenticator(cfg, store)
    assert await reason(auth, issued.token, first) == "invalid_credentials"


async def test_only_the_hash_is_stored(store: UserStore) -> None:
    user, access_token = await store.create("alice", "pw")
    stored = await store.get(user.id)
    assert stored is not None
    assert stored.access_token_hash == hash_access_token(access_token)
    assert access_token not in repr(stored)
    assert len(access_token) >= 43  # 256 bits of URL-safe base64


async def test_unknown_user(store: UserStore, cfg: AuthConfig) -> None:
    auth = Authenticator(cfg, store)
    token, _ = issue_jwt("65f0a1b2c3d4e5f6a7b8c9d0", cfg)
    assert await reason(auth, token, "x" * 43) == "invalid_credentials"  # as a wrong token


async def test_disabled_user_is_403(store: UserStore, cfg: AuthConfig) -> None:
    user, access_token = await store.create("alice", "pw")
    await store.set_disabled(user.id)
    auth = Authenticator(cfg, store)
    with pytest.raises(AuthError) as info:
        await auth.verify(issue_jwt(user.id, cfg)[0], access_token)
    assert (info.value.reason, info.value.status) == ("disabled", 403)


async def test_wrong_rotated_and_revoked_access_tokens(store: UserStore, cfg: AuthConfig) -> None:
    user, access_token = await store.create("alice", "pw")
    auth = Authenticator(cfg, store)
    token, _ = issue_jwt(user.id, cfg)
    assert await reason(auth, token, "wrong-" + access_token[6:]) == "invalid_credentials"
    _bob, other_token = await store.create("bob", "pw")
    assert await reason(auth, token, other_token) == "invalid_credentials"  # bob's token
    new = await store.set_access_token(user.id)
    assert await reason(auth, token, access_token) == "invalid_credentials"  # rotated
    assert (await auth.verify(token, new)).user_id == user.id
    await store.clear_access_token(user.id)
    assert await reason(auth, token, new) == "invalid_credentials"  # revoked
    await store.set_password(user.id, "pw2")
    assert await reason(auth, token, new) == "invalid_credentials"


async def test_password_change_revokes(store: UserStore, cfg: AuthConfig) -> None:
    user, access_token = await store.create("alice", "pw")
    await store.set_password(user.id, "new-password")
    auth = Authenticator(cfg, store)
    assert await reason(auth, issue_jwt(user.id, cfg)[0], access_token) == "invalid_credentials"
    issued = await auth.login("alice", "new-password")
    assert (await auth.verify(issued.token, issued.access_token)).user_name == "alice"
    with pytest.raises(AuthError, match="invalid credentials"):
        await auth.login("alice", "pw")


async def test_missing_and_malformed_headers(store: UserStore, cfg: AuthConfig) -> None:
    user, access_token = await store.create("alice", "pw")
    auth = Authenticator(cfg, store)
    token, _ = issue_jwt(user.id, cfg)
    assert await reason(auth, None, access_token) == "missing"
    assert await reason(auth, token, None) == "missing"
    assert await reason(auth, token, "") == "missing"
    assert await reason(auth, "garbage", access_token) == "malformed"
    assert await reason(auth, token, "has space") == "malformed"
    assert await reason(auth, token, "ü" * 10) == "malformed"
    assert await reason(auth, token, "a" * 100_000) == "malformed"
    assert await reason(auth, "a" * 100_000, access_token) == "malformed"


async def test_access_token_compare_is_constant_time(
    store: UserStore, cfg: AuthConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, access_token = await store.create("alice", "pw")
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    auth = Authenticator(cfg, store)
    token, _ = issue_jwt(user.id, cfg)
    await auth.verify(token, access_token)
    assert (hash_access_token(access_token), hash_access_token(access_token)) in calls
    calls.clear()
    assert await reason(auth, token, "nope") == "invalid_credentials"
    assert any(a == hash_access_token("nope") for a, _ in calls)  # pyjwt uses it too


async def test_store_failure_is_a_typed_503(cfg: AuthConfig) -> None:
    class Broken:
        async def get(self, user_id: str) -> None:
            raise ConnectionError("down")

    auth = Authenticator(cfg, Broken())  # type: ignore[arg-type]
    with pytest.raises(AuthError) as info:
        await auth.verify(issue_jwt("abc", cfg)[0], "token")
    assert (info.value.reason, info.value.status) == ("unavailable", 503)


async def test_login(store: UserStore, cfg: AuthConfig) -> None:
    user, first = await store.create("alice", "s3cret")
    auth = Authenticator(cfg, store)
    for name, password in (("alice", "wrong"), ("nobody", "s3cret"), ("", "")):
        with pytest.raises(AuthError) as info:
            await auth.login(name, password)
        assert info.value.reason == "invalid_credentials"
    issued = await auth.login("alice", "s3cret")
    assert issued.user_id == user.id
    assert (await auth.verify(issued.token, issued.access_token)).user_id == user.id
    assert await reason(auth, issued.token, first) == "invalid_credentials"
    await store.set_disabled(user.id)
    with pytest.raises(AuthError) as disabled:
        await auth.login("alice", "s3cret")
    assert disabled.value.status == 403


# --- hypothesis: hostile input only ever raises AuthError ---------------------------------


class EmptyStore:
    async def get(self, user_id: str) -> None:
        return None


FUZZ_CFG = AuthConfig(secret=SECRET)
FUZZ_AUTH = Authenticator(FUZZ_CFG, EmptyStore())  # type: ignore[arg-type]
junk = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.from_regex(r"\A[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,40}\Z"),
    st.integers(),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x_token=junk, x_access_token=junk)
async def test_random_tokens_only_raise_auth_error(x_token: object, x_access_token: object) -> None:
    with pytest.raises(AuthError):
        await FUZZ_AUTH.verify(x_token, x_access_token)


claim_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def hs256(payload: dict[str, Any]) -> str:
    """Sign by hand: pyjwt refuses to encode some of these payloads at all."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    head = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(payload).encode())
    mac = hmac.new(SECRET.encode(), head.encode(), hashlib.sha256).digest()
    return f"{head}.{b64(mac)}"


@settings(max_examples=150, deadline=None)
@given(
    payload=st.dictionaries(
        st.sampled_from(["sub", "iat", "exp", "nbf", "iss", "aud", "jti"]), claim_values
    )
)
def test_signed_junk_claims_only_raise_auth_error(payload: dict[str, Any]) -> None:
    # Correctly signed, so every claim check is reached with hostile values.
    token = hs256(payload)
    try:
        FUZZ_AUTH.verify_jwt(token)
    except AuthError:
        pass


async def test_tokens_never_reach_logs_or_messages(
    store: UserStore, cfg: AuthConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    user, access_token = await store.create("alice", "pw")
    auth = Authenticator(cfg, store)
    token, _ = issue_jwt(user.id, cfg)
    messages = []
    for x_token, x_access in ((token, "bad" + access_token), (token[:-2], access_token)):
        with pytest.raises(AuthError) as info:
            await auth.verify(x_token, x_access)
        messages.append(str(info.value) + repr(info.value))
    text = caplog.text + "".join(messages)
    assert access_token not in text and token[:-2] not in text

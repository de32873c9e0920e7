"""x-tokens from an identity provider: keys from a JWKS served on a real loopback port, or a PEM.

The JWKS server is a real aiohttp server (:class:`wsmq.testing.jwks.JwksServer`) that counts
the requests it answers; the cache's clock is the test's, so the re-fetch intervals are exact.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from wsmq.auth import AuthConfig, Authenticator, AuthError, FileUserStore
from wsmq.auth.errors import JwksError
from wsmq.auth.jwks import MAX_KEYS, JwksCache, check_jwks_url, parse_jwks
from wsmq.auth.tokens import JwtCodec
from wsmq.errors import ConfigError, WsmqError
from wsmq.settings import Settings
from wsmq.testing.jwks import IdpKey, JwksServer, ec_key, ed25519_key, rsa_key

from .conftest import CHEAP, SECRET

USER = "65f0a1b2c3d4e5f6a7b8c9d0"
INTERVAL = 60.0
TTL = 600.0

# One key of each kind for the module: RSA generation is the slow part.
RSA = rsa_key("rsa-1")
EC = ec_key("ec-1")
ED = ed25519_key("ed-1")


class Clock:
    """Monotonic seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def idp() -> AsyncIterator[JwksServer]:
    server = await JwksServer(keys=[RSA, EC, ED]).start()
    yield server
    await server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_codec(idp: JwksServer, clock: Clock, **config: Any) -> JwtCodec:
    cfg = AuthConfig(jwks_url=idp.url, scrypt_n=2**4, **config)
    cache = JwksCache(idp.url, min_refetch_interval=INTERVAL, ttl=TTL, timeout=5.0, clock=clock)
    return JwtCodec(cfg, jwks=cache)


@pytest.fixture
def codec(idp: JwksServer, clock: Clock) -> JwtCodec:
    return make_codec(idp, clock)


async def check(codec: JwtCodec, token: str) -> str:
    async with asyncio.timeout(10):
        return (await codec.verify_async(token)).user_id


async def refused(codec: JwtCodec, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        await check(codec, token)
    assert info.value.status == 401
    return info.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hs256_with(key: bytes, header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    """An HS256 token MACed with ``key`` by hand (pyjwt refuses PEM bytes as an HMAC key)."""
    now = int(time.time())
    payload = claims or {"sub": f"users/{USER}", "iat": now, "exp": now + 60}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


# -- accepted ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
async def test_tokens_of_each_key_type_are_accepted(
    codec: JwtCodec, idp: JwksServer, key: IdpKey
) -> None:
    assert await check(codec, key.sign(USER)) == USER
    assert idp.requests == 1


async def test_a_known_kid_never_waits_for_the_network(codec: JwtCodec, idp: JwksServer) -> None:
    await check(codec, RSA.sign(USER))
    for _ in range(50):
        assert await check(codec, EC.sign(USER)) == USER
        assert codec.verify(RSA.sign(USER)).user_id == USER  # the sync path: cache only
    assert idp.requests == 1


async def test_the_first_tokens_share_one_fetch(codec: JwtCodec, idp: JwksServer) -> None:
    users = await asyncio.gather(*(check(codec, RSA.sign(USER)) for _ in range(30)))
    assert users == [USER] * 30
    assert idp.requests == 1


async def test_the_sync_check_refuses_a_key_it_has_not_fetched(codec: JwtCodec) -> None:
    with pytest.raises(AuthError) as info:
        codec.verify(RSA.sign(USER))
    assert info.value.reason == "invalid_signature"


# -- rotation ------------------------------------------------------------------------------


async def test_a_new_kid_is_fetched_once_and_accepted(
    codec: JwtCodec, idp: JwksServer, clock: Clock
) -> None:
    await check(codec, RSA.sign(USER))
    new = rsa_key("rsa-2")
    idp.keys.append(new)
    clock.advance(INTERVAL)
    results = await asyncio.gather(*(check(codec, new.sign(USER)) for _ in range(10)))
    assert results == [USER] * 10
    assert idp.requests == 2
    assert await check(codec, RSA.sign(USER)) == USER  # the old key still works meanwhile


async def test_a_new_kid_within_the_interval_waits_for_the_next_one(
    codec: JwtCodec, idp: JwksServer, clock: Clock
) -> None:
    await check(codec, RSA.sign(USER))
    new = ec_key("ec-2")
    idp.keys.append(new)
    clock.advance(INTERVAL / 2)
    assert (await refused(codec, new.sign(USER))).reason == "invalid_signature"
    assert idp.requests == 1
    clock.advance(INTERVAL / 2)
    assert await check(codec, new.sign(USER)) == USER
    assert idp.requests == 2


async def test_a_removed_kid_is_refused_after_the_ttl_refresh(
    codec: JwtCodec, idp: JwksServer, clock: Clock
) -> None:
    assert await check(codec, RSA.sign(USER)) == USER
    idp.keys.remove(RSA)
    clock.advance(TTL)
    # Still accepted: the refresh runs in the background, the token is checked from the cache.
    assert await check(codec, RSA.sign(USER)) == USER
    assert codec.jwks is not None
    await codec.jwks.settled()
    assert idp.requests == 2
    assert (await refused(codec, RSA.sign(USER))).reason == "invalid_signature"
    assert await check(codec, EC.sign(USER)) == USER
    assert idp.requests == 2  # the refused old kid was within the interval: no fetch


# -- rate limit ----------------------------------------------------------------------------


async def test_unknown_kids_fetch_at_most_once_per_interval(
    codec: JwtCodec, idp: JwksServer, clock: Clock
) -> None:
    await check(codec, RSA.sign(USER))

    async def flood() -> None:
        forged = [rsa_like(secrets.token_hex(8)) for _ in range(100)]
        errors = await asyncio.gather(*(refused(codec, token) for token in forged))
        assert {e.reason for e in errors} == {"invalid_signature"}

    clock.advance(INTERVAL)
    await flood()
    assert idp.requests == 2  # one fetch for the whole flood
    await flood()
    clock.advance(INTERVAL - 1)
    await flood()
    assert idp.requests == 2
    clock.advance(1)
    await flood()
    assert idp.requests == 3
    assert await check(codec, RSA.sign(USER)) == USER


def rsa_like(kid: str) -> str:
    """A token signed by the real RSA key but naming a made-up kid."""
    return RSA.sign(USER, headers={"kid": kid})


# -- the JWKS failing ----------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["error", "garbage", "huge", "down"])
async def test_a_failing_jwks_keeps_the_cached_keys_and_logs_once(
    codec: JwtCodec,
    idp: JwksServer,
    clock: Clock,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert codec.jwks is not None
    await check(codec, RSA.sign(USER))
    new = ec_key("ec-new")
    idp.keys.append(new)
    if failure == "down":
        await idp.down()
    else:
        idp.mode = failure  # type: ignore[assignment]
    caplog.set_level(logging.INFO, logger="wsmq.auth")
    for _ in range(3):  # three failed fetches: TTL refresh, then unknown kids
        clock.advance(TTL)
        assert await check(codec, RSA.sign(USER)) == USER
        await codec.jwks.settled()
        clock.advance(INTERVAL)
        error = await refused(codec, new.sign(USER))
        assert error.reason == "invalid_signature"
        assert error.to_json()["error"] == "invalid_signature"
    assert codec.jwks.fetches == 7
    outages = [r for r in caplog.records if getattr(r, "event", None) == "jwks_unavailable"]
    assert len(outages) == 1, [r.getMessage() for r in outages]
    assert idp.url in outages[0].getMessage()

    if failure == "down":
        await idp.up()
    idp.mode = "ok"
    clock.advance(INTERVAL)
    assert await check(codec, new.sign(USER)) == USER
    recovered = [r for r in caplog.records if getattr(r, "event", None) == "jwks_recovered"]
    assert len(recovered) == 1


async def test_refresh_raises_a_jwks_error_in_the_error_tree(
    codec: JwtCodec, idp: JwksServer
) -> None:
    assert codec.jwks is not None
    idp.mode = "error"
    with pytest.raises(JwksError) as info:
        await codec.jwks.refresh()
    assert isinstance(info.value, WsmqError)
    assert info.value.code == "jwks_error" and info.value.url == idp.url
    assert "HTTP 500" in info.value.message
    idp.mode = "ok"
    keys = await codec.jwks.refresh()
    assert set(keys.by_kid) == {"rsa-1", "ec-1", "ed-1"}


async def test_a_slow_jwks_times_out(idp: JwksServer, clock: Clock) -> None:
    # A listening socket that never answers: accept, then silence.
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    cache = JwksCache(url, timeout=0.2, clock=clock)
    try:
        with pytest.raises(JwksError, match="TimeoutError"):
            async with asyncio.timeout(5):
                await cache.refresh()
    finally:
        silent.close()
        await silent.wait_closed()


# -- algorithm confusion -------------------------------------------------------------------


async def test_alg_none_is_refused(codec: JwtCodec) -> None:
    await check(codec, RSA.sign(USER))
    now = int(time.time())
    body = {"sub": f"users/{USER}", "iat": now, "exp": now + 60}
    header = b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    token = f"{header}.{b64(json.dumps(body).encode())}."
    assert (await refused(codec, token)).reason == "invalid_signature"
    unsigned = jwt.encode(body, "", algorithm="none", headers={"kid": "rsa-1"})
    assert (await refused(codec, unsigned)).reason == "invalid_signature"


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["rsa", "ec", "ed25519"])
async def test_hs256_macd_with_the_public_key_is_refused(codec: JwtCodec, key: IdpKey) -> None:
    await check(codec, RSA.sign(USER))
    for material in (key.public_pem(), json.dumps(key.jwk()).encode()):
        token = hs256_with(material, {"alg": "HS256", "typ": "JWT", "kid": key.kid})
        assert (await refused(codec, token)).reason == "invalid_signature"


@pytest.mark.parametrize(
    ("signer", "kid"),
    [(RSA, "ec-1"), (EC, "rsa-1"), (ED, "rsa-1"), (RSA, "ed-1"), (EC, "ed-1")],
    ids=["rs256-for-ec", "es256-for-rsa", "eddsa-for-rsa", "rs256-for-ed", "es256-for-ed"],
)
async def test_a_kid_pointing_at_another_key_type_is_refused(
    codec: JwtCodec, signer: IdpKey, kid: str
) -> None:
    token = signer.sign(USER, headers={"kid": kid})
    assert (await refused(codec, token)).reason == "invalid_signature"


async def test_other_rsa_algorithms_are_refused_for_an_rsa_key(codec: JwtCodec) -> None:
    await check(codec, RSA.sign(USER))
    for alg in ("RS384", "RS512", "PS256"):
        now = int(time.time())
        body = {"sub": f"users/{USER}", "iat": now, "exp": now + 60}
        token = jwt.encode(body, RSA.private, algorithm=alg, headers={"kid": "rsa-1"})
        assert (await refused(codec, token)).reason == "invalid_signature"


async def test_symmetric_and_mislabelled_jwks_keys_are_never_used(
    idp: JwksServer, clock: Clock
) -> None:
    shared = secrets.token_bytes(32)
    other = rsa_key("mislabelled")
    idp.extra_jwks = [
        {"kty": "oct", "kid": "hmac", "k": b64(shared), "alg": "HS256"},
        {**other.jwk(), "alg": "HS256"},
        {**ec_key("enc").jwk(), "use": "enc"},
        {**rsa_key("small", bits=1024).jwk()},
    ]
    codec = make_codec(idp, clock)
    await check(codec, RSA.sign(USER))
    assert codec.jwks is not None
    assert set(codec.jwks.keys.by_kid) == {"rsa-1", "ec-1", "ed-1"}
    token = hs256_with(shared, {"alg": "HS256", "kid": "hmac"})
    assert (await refused(codec, token)).reason == "invalid_signature"
    assert (await refused(codec, other.sign(USER))).reason == "invalid_signature"


async def test_with_a_secret_too_kid_tokens_go_to_the_jwks_only(
    idp: JwksServer, clock: Clock
) -> None:
    codec = make_codec(idp, clock, secret=SECRET)
    now = int(time.time())
    body = {"sub": f"users/{USER}", "iat": now, "exp": now + 60}
    assert await check(codec, jwt.encode(body, SECRET, algorithm="HS256")) == USER
    assert await check(codec, RSA.sign(USER)) == USER
    # The shared secret under a JWKS kid: the RSA key verifies RS256 only.
    token = jwt.encode(body, SECRET, algorithm="HS256", headers={"kid": "rsa-1"})
    assert (await refused(codec, token)).reason == "invalid_signature"
    # An IdP key without a kid goes to the node's own key, which verifies HS256 only.
    assert (await refused(codec, rsa_key(None).sign(USER))).reason == "invalid_signature"
    assert codec.can_issue


async def test_a_token_without_kid_uses_the_only_jwks_key(clock: Clock) -> None:
    server = await JwksServer(keys=[ec_key(None)]).start()
    try:
        codec = make_codec(server, clock)
        assert await check(codec, server.keys[0].sign(USER)) == USER
        server.keys.append(ec_key(None))
        clock.advance(TTL)
        await codec.jwks.refresh() if codec.jwks else None
        # Two keys without kids: which one is meant is not guessed.
        assert (await refused(codec, server.keys[0].sign(USER))).reason == "invalid_signature"
    finally:
        await server.stop()


# -- claims --------------------------------------------------------------------------------


async def test_iss_and_aud_are_required_when_configured(idp: JwksServer, clock: Clock) -> None:
    codec = make_codec(idp, clock, issuer="https://idp.example.com/", audience="wsmq")
    good = {"iss": "https://idp.example.com/", "aud": "wsmq"}
    assert await check(codec, RSA.sign(USER, claims=good)) == USER
    assert await check(codec, EC.sign(USER, claims={**good, "aud": ["other", "wsmq"]})) == USER
    for bad in (
        {"aud": "wsmq"},
        {"iss": "https://idp.example.com/"},
        {**good, "iss": "https://evil.example.com/"},
        {**good, "aud": "other"},
    ):
        assert (await refused(codec, RSA.sign(USER, claims=bad))).reason == "invalid_claims"


async def test_expired_and_bad_subject_tokens_are_refused(codec: JwtCodec) -> None:
    assert (await refused(codec, RSA.sign(USER, ttl=-60))).reason == "expired"
    bad_sub = RSA.sign(USER, claims={"sub": "users/../etc"})
    assert (await refused(codec, bad_sub)).reason == "invalid_claims"


async def test_hostile_headers_are_malformed(codec: JwtCodec) -> None:
    header = b64(b'{"alg":"RS256","kid":{"x":1}}')
    token = f"{header}.{b64(b'{}')}.{b64(b'sig')}"
    assert (await refused(codec, token)).reason == "malformed"
    token = f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'sig')}"
    assert (await refused(codec, token)).reason == "malformed"


# -- the access token still counts ---------------------------------------------------------


async def test_the_access_token_is_checked_against_the_store(
    idp: JwksServer, tmp_path: Path
) -> None:
    store = FileUserStore(tmp_path / "users.json", hasher=CHEAP)
    user, access = await store.create("alice", "password-123")
    auth = Authenticator(AuthConfig(jwks_url=idp.url, scrypt_n=2**4), store)
    try:
        who = await auth.verify(RSA.sign(user.id), access)
        assert who.user_id == user.id and who.user_name == "alice"
        assert (await auth.check_jwt(EC.sign(user.id))).user_id == user.id
        with pytest.raises(AuthError) as info:
            await auth.verify(RSA.sign(user.id), "x" * 43)
        assert info.value.reason == "invalid_credentials"
        # Verify-only: nothing to sign with.
        assert not auth.can_issue
        with pytest.raises(ValueError, match="no signing key"):
            await auth.issue_tokens(user)
        assert (await auth.verify(RSA.sign(user.id), access)).user_id == user.id  # not rotated
    finally:
        await auth.aclose()
        await store.close()


# -- PEM key file --------------------------------------------------------------------------


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=["RS256", "ES256", "EdDSA"])
def test_a_pem_public_key_verifies_its_own_algorithm_only(tmp_path: Path, key: IdpKey) -> None:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(key.public_pem())
    codec = JwtCodec(AuthConfig(algorithm=key.algorithm, public_key_file=pem))
    assert codec.verify(key.sign(USER)).user_id == USER
    assert not codec.can_issue
    for other in (RSA, EC, ED):
        if other is not key:
            with pytest.raises(AuthError) as info:
                codec.verify(other.sign(USER))
            assert info.value.reason == "invalid_signature"
    with pytest.raises(AuthError) as info:
        codec.verify(hs256_with(key.public_pem(), {"alg": "HS256", "typ": "JWT"}))
    assert info.value.reason == "invalid_signature"


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [(RSA, "ES256"), (RSA, "EdDSA"), (EC, "RS256"), (EC, "ES384"), (ED, "ES256")],
)
def test_a_pem_key_of_another_type_than_the_algorithm_is_refused(
    tmp_path: Path, key: IdpKey, algorithm: str
) -> None:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(key.public_pem())
    with pytest.raises(ValueError, match="pinned by the key type"):
        JwtCodec(AuthConfig(algorithm=algorithm, public_key_file=pem))


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://idp.example.com/.well-known/jwks.json", False, True),
        ("http://127.0.0.1:8000/jwks.json", False, True),
        ("http://[::1]:8000/jwks.json", False, True),
        ("http://localhost/jwks.json", False, True),
        ("http://idp.example.com/jwks.json", False, False),
        ("http://idp.example.com/jwks.json", True, True),
        ("https://user:pw@idp.example.com/jwks.json", False, False),
        ("ftp://idp.example.com/jwks.json", True, False),
        ("idp.example.com/jwks.json", False, False),
    ],
)
def test_jwks_urls(url: str, allow_http: bool, ok: bool) -> None:
    if ok:
        check_jwks_url(url, allow_http=allow_http)
        AuthConfig(jwks_url=url, jwks_allow_http=allow_http)
    else:
        with pytest.raises(ConfigError) as info:
            AuthConfig(jwks_url=url, jwks_allow_http=allow_http)
        assert info.value.name == "jwks_url"


def test_settings_build_a_verify_only_config() -> None:
    env = {
        "WSMQ_JWKS_URL": "https://idp.example.com/jwks.json",
        "WSMQ_JWKS_MIN_REFETCH_INTERVAL": "30",
        "WSMQ_JWKS_CACHE_TTL": "300",
        "WSMQ_ISSUER": "https://idp.example.com/",
        "WSMQ_AUDIENCE": "wsmq",
    }
    cfg = Settings.from_sources(env=env).auth_config()
    assert cfg is not None and cfg.jwks_url == env["WSMQ_JWKS_URL"]
    assert (cfg.jwks_min_refetch_interval, cfg.jwks_cache_ttl) == (30.0, 300.0)
    assert (cfg.issuer, cfg.audience) == ("https://idp.example.com/", "wsmq")
    assert not cfg.can_issue
    with pytest.raises(ConfigError) as info:
        Settings(jwks_min_refetch_interval=120, jwks_cache_ttl=60)
    assert info.value.name == "jwks_cache_ttl"
    with pytest.raises(ConfigError):
        Settings(jwks_url="http://idp.example.com/jwks.json").auth_config()


def test_parse_jwks_refuses_documents_without_usable_keys() -> None:
    nested = b"[" * 100_000  # json.loads raises RecursionError: a JwksError like the rest
    for body in (b"[]", b'{"keys": {}}', b"\xff", b'{"keys": []}', nested):
        with pytest.raises(JwksError):
            parse_jwks(body, "https://idp.example.com/jwks.json")
    many = json.dumps({"keys": [EC.jwk()] * (MAX_KEYS + 1)}).encode()
    with pytest.raises(JwksError, match="more than"):
        parse_jwks(many)
    only_bad = json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}, "x", {"kty": "RSA"}]}).encode()
    with pytest.raises(JwksError, match="no usable"):
        parse_jwks(only_bad)

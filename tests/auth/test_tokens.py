"""x-token (JWT) checks: every rejection has the right reason; keys and algorithms are pinned."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from wsmq.auth import AuthConfig, AuthError
from wsmq.auth.tokens import JwtCodec, user_id_from_subject

from .conftest import SECRET

USER = "65f0a1b2c3d4e5f6a7b8c9d0"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(payload, secret, algorithm=alg)


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": f"users/{USER}", "iat": now, "exp": now + 60}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def reason_of(codec: JwtCodec, token: object) -> str:
    with pytest.raises(AuthError) as info:
        codec.verify(token)
    return info.value.reason


@pytest.fixture
def codec(cfg: AuthConfig) -> JwtCodec:
    return JwtCodec(cfg)


def test_issue_then_verify_roundtrip(codec: JwtCodec) -> None:
    token, expires_in = codec.issue(USER)
    assert expires_in == 900
    got = codec.verify(token)
    assert got.user_id == USER
    assert got.exp - got.iat == 900
    payload = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert payload["sub"] == f"users/{USER}"  # tokens2's subject format


def test_bare_subject_is_accepted(codec: JwtCodec) -> None:
    assert codec.verify(sign(claims(sub=USER))).user_id == USER


def test_custom_ttl(codec: JwtCodec) -> None:
    token, expires_in = codec.issue(USER, ttl=30)
    assert expires_in == 30
    got = codec.verify(token)
    assert got.exp - got.iat == 30


def test_expired(codec: JwtCodec) -> None:
    now = int(time.time())
    assert reason_of(codec, sign(claims(iat=now - 100, exp=now - 10))) == "expired"


def test_expired_within_leeway_is_accepted(codec: JwtCodec) -> None:
    now = int(time.time())
    assert codec.verify(sign(claims(iat=now - 100, exp=now - 2))).user_id == USER


def test_expired_with_explicit_clock(codec: JwtCodec) -> None:
    token, _ = codec.issue(USER, ttl=60)
    assert reason_of_now(codec, token, time.time() + 120) == "expired"


def reason_of_now(codec: JwtCodec, token: str, now: float) -> str:
    with pytest.raises(AuthError) as info:
        codec.verify(token, now=now)
    return info.value.reason


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_not_yet_valid(codec: JwtCodec, claim: str) -> None:
    now = int(time.time())
    token = sign(claims(**{claim: now + 60}, exp=now + 600))
    assert reason_of(codec, token) == "not_yet_valid"


def test_iat_in_future_within_leeway_is_accepted(codec: JwtCodec) -> None:
    now = int(time.time())
    assert codec.verify(sign(claims(iat=now + 3))).user_id == USER


def test_tampered_payload(codec: JwtCodec) -> None:
    header, _, signature = sign(claims()).split(".")
    forged = b64(json.dumps(claims(sub="users/someone-else")).encode())
    assert reason_of(codec, f"{header}.{forged}.{signature}") == "invalid_signature"


def test_wrong_secret(codec: JwtCodec) -> None:
    assert reason_of(codec, sign(claims(), secret="another-secret-" + "x" * 32)) == (
        "invalid_signature"
    )


def test_alg_none(codec: JwtCodec) -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    assert reason_of(codec, f"{header}.{body}.") == "invalid_signature"
    assert reason_of(codec, f"{header}.{body}.AAAA") == "invalid_signature"


def test_other_hmac_algorithm_is_rejected(codec: JwtCodec) -> None:
    # HS512 with the right secret is still refused: the algorithm comes from configuration.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        token = sign(claims(), alg="HS512")
    assert reason_of(codec, token) == "invalid_signature"


@pytest.mark.parametrize("missing", ["sub", "iat", "exp"])
def test_missing_claims(codec: JwtCodec, missing: str) -> None:
    assert reason_of(codec, sign(claims(**{missing: None}))) == "invalid_claims"


@pytest.mark.parametrize("sub", [42, "", "users/", "users/a b", "users/a\n", "x" * 200, ["a"]])
def test_bad_subject(codec: JwtCodec, sub: object) -> None:
    assert reason_of(codec, sign(claims(sub=sub))) == "invalid_claims"


@pytest.mark.parametrize(
    "token",
    ["abc", "a.b", "a.b.c.d", "not a token", "é.é.é", "....", "eyJ.eyJ.sig", " ", "a.b.c\n"],
)
def test_malformed(codec: JwtCodec, token: str) -> None:
    assert reason_of(codec, token) in {"malformed", "missing"}


@pytest.mark.parametrize("token", [None, "", b""])
def test_missing(codec: JwtCodec, token: object) -> None:
    assert reason_of(codec, token) == "missing"


def test_non_string_types_are_malformed(codec: JwtCodec) -> None:
    assert reason_of(codec, 12345) == "malformed"
    assert reason_of(codec, b"\xff\xfe") == "malformed"


def test_absurdly_long_header_is_rejected_before_parsing(
    codec: JwtCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    called: list[object] = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: called.append(a))
    token = sign(claims(pad="x" * 10_000))
    assert reason_of(codec, token) == "malformed"
    assert reason_of(codec, "a" * 1_000_000) == "malformed"
    assert called == []


def test_issuer_and_audience_are_checked() -> None:
    strict = JwtCodec(AuthConfig(secret=SECRET, issuer="wsmq", audience="clients"))
    token, _ = strict.issue(USER)
    assert strict.verify(token).user_id == USER
    assert reason_of(strict, sign(claims())) == "invalid_claims"  # neither
    assert reason_of(strict, sign(claims(iss="evil", aud="clients"))) == "invalid_claims"
    assert reason_of(strict, sign(claims(iss="wsmq", aud="others"))) == "invalid_claims"


# --- secret rotation ------------------------------------------------------------------------


def test_previous_secret_accepted_inside_window() -> None:
    old = "old-secret-" + "o" * 32
    rotated = JwtCodec(
        AuthConfig(secret=SECRET, previous_secret=old, previous_secret_until=time.time() + 60)
    )
    assert rotated.verify(sign(claims(), secret=old)).user_id == USER
    assert rotated.verify(sign(claims())).user_id == USER
    assert reason_of(rotated, sign(claims(), secret="third-" + "t" * 32)) == "invalid_signature"
    token, _ = rotated.issue(USER)  # new tokens use the new secret
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["sub"] == f"users/{USER}"


def test_previous_secret_rejected_after_window() -> None:
    old = "old-secret-" + "o" * 32
    rotated = JwtCodec(
        AuthConfig(secret=SECRET, previous_secret=old, previous_secret_until=time.time() - 1)
    )
    assert reason_of(rotated, sign(claims(), secret=old)) == "invalid_signature"


def test_previous_secret_window_uses_explicit_clock() -> None:
    old = "old-secret-" + "o" * 32
    until = time.time() + 60
    rotated = JwtCodec(AuthConfig(secret=SECRET, previous_secret=old, previous_secret_until=until))
    token = sign(claims(), secret=old)
    assert rotated.verify(token, now=until - 1).user_id == USER
    assert reason_of_now(rotated, token, until + 1) == "invalid_signature"


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": SECRET, "leeway": 6},
        {"secret": SECRET, "leeway": -1},
        {"secret": SECRET, "algorithm": "none"},
        {"secret": SECRET, "algorithm": "HS1"},
        {"secret": None},
        {"algorithm": "RS256"},
        {"secret": SECRET, "ttl": 0},
        {"secret": SECRET, "previous_secret": "x" * 32},
        {"secret": SECRET, "scrypt_n": 1000},
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AuthConfig(**kwargs)


def test_subject_parsing() -> None:
    assert user_id_from_subject("users/abc") == "abc"
    assert user_id_from_subject("abc") == "abc"


# --- asymmetric keys ---------------------------------------------------------------------------


def _write_keys(tmp_path: Path, private: Any) -> tuple[Path, Path]:
    priv = tmp_path / "private.pem"
    pub = tmp_path / "public.pem"
    priv.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv, pub


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_asymmetric_roundtrip(tmp_path: Path, alg: str, rsa_key: Any) -> None:
    private = {
        "RS256": lambda: rsa_key,
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate,
    }[alg]()
    priv, pub = _write_keys(tmp_path, private)
    issuer = JwtCodec(AuthConfig(algorithm=alg, private_key_file=priv))
    verifier = JwtCodec(AuthConfig(algorithm=alg, public_key_file=pub))
    token, _ = issuer.issue(USER)
    assert verifier.verify(token).user_id == USER
    with pytest.raises(ValueError):
        verifier.issue(USER)  # a verify-only node cannot sign


def test_hs256_token_refused_when_rs256_configured(tmp_path: Path, rsa_key: Any) -> None:
    """Key confusion: an HS256 token MACed with the public key must not pass as RS256."""
    _, pub = _write_keys(tmp_path, rsa_key)
    verifier = JwtCodec(AuthConfig(algorithm="RS256", public_key_file=pub))
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pub.read_bytes(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert reason_of(verifier, f"{header}.{body}.{b64(mac)}") == "invalid_signature"


def test_access_tokens_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token is passed after an option on command lines (``--access-token TOKEN``); argparse
    takes a value starting with ``-`` for an option (the demo test failed on one in 64)."""
    import secrets

    from wsmq.auth import tokens

    draws = iter(["-starts-with-a-dash", "-again", "fine-token"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(draws))
    assert tokens.new_access_token() == "fine-token"
    monkeypatch.undo()
    token = tokens.new_access_token()
    assert len(token) == 43 and not token.startswith("-")

"""The HMAC fast path of x-token checks: it accepts the usual valid tokens itself and leaves
every other token to pyjwt, so each answer (claims or error reason) is pyjwt's own."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from wsmq import _compat
from wsmq.auth import AuthConfig, AuthError
from wsmq.auth.jwt_hmac import HmacFastPath
from wsmq.auth.tokens import JwtCodec, TokenClaims

from .conftest import SECRET

OTHER = "another-secret-" + "y" * 40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def craft(header: object, payload: object, secret: str = SECRET, digest: Any = None) -> str:
    """A token with exactly this header and payload JSON, signed (HMAC) with ``secret``."""
    head = b64(json.dumps(header).encode())
    body = b64(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), digest or hashlib.sha256)
    return f"{head}.{body}.{b64(mac.digest())}"


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "users/alice", "iat": now - 10, "exp": now + 600}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


HS256 = {"alg": "HS256", "typ": "JWT"}


def valid_tokens() -> dict[str, str]:
    return {
        "pyjwt": jwt.encode(claims(), SECRET, algorithm="HS256"),
        "no typ": craft({"alg": "HS256"}, claims()),
        "keys reordered": craft({"typ": "JWT", "alg": "HS256"}, claims()),
        "bare subject": craft(HS256, claims(sub="alice")),
        "float exp": craft(HS256, claims(exp=time.time() + 600.5)),
        "nbf past, jti": craft(HS256, claims(nbf=int(time.time()) - 5, jti="abc")),
        "exp within leeway": craft(HS256, claims(exp=int(time.time()) - 2)),
        "extra claims": craft(HS256, claims(role="admin", aud="someone")),
    }


def other_tokens() -> dict[str, str]:
    now = int(time.time())
    good = jwt.encode(claims(), SECRET, algorithm="HS256")
    head, body, sig = good.split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    return {
        "previous secret": craft(HS256, claims(), OTHER),
        "tampered payload": f"{head}.{b64(json.dumps(claims(sub='users/bob')).encode())}.{sig}",
        "tampered signature": f"{head}.{body}.{flipped}",
        "non-canonical signature": f"{head}.{body}.{sig[:-1]}{chr(ord(sig[-1]) + 1)}",
        "empty signature": f"{head}.{body}.",
        "kid header": craft({"alg": "HS256", "kid": "k1"}, claims()),
        "crit header": craft({"alg": "HS256", "crit": ["exp"]}, claims()),
        "alg none": f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}.",
        "alg HS512": craft({"alg": "HS512"}, claims(), digest=hashlib.sha512),
        "header not an object": craft(["HS256"], claims()),
        "header not JSON": f"{b64(b'alg:HS256')}.{body}.{sig}",
        "payload a list": craft(HS256, [1, 2]),
        "payload not JSON": craft(HS256, b"\xff\xfe not json"),
        "expired": craft(HS256, claims(exp=now - 60)),
        "iat in the future": craft(HS256, claims(iat=now + 60)),
        "nbf in the future": craft(HS256, claims(nbf=now + 60)),
        "no sub": craft(HS256, claims(sub=None)),
        "no iat": craft(HS256, claims(iat=None)),
        "no exp": craft(HS256, claims(exp=None)),
        "exp null": craft(HS256, {**claims(), "exp": None}),
        "exp a string": craft(HS256, claims(exp=str(now + 600))),
        "exp garbage": craft(HS256, claims(exp="soon")),
        "exp true": craft(HS256, claims(exp=True)),
        "iat garbage": craft(HS256, claims(iat="abc")),
        "nbf garbage": craft(HS256, claims(nbf="abc")),
        "sub a number": craft(HS256, claims(sub=42)),
        "sub not an id": craft(HS256, claims(sub="users/a b")),
        "jti a number": craft(HS256, claims(jti=7)),
        "huge exp": craft(HS256, claims(exp=10**400)),
        "nan-like exp": craft(HS256, claims(exp=1e400)),
    }


@pytest.fixture
def fast_paths_on() -> Iterator[None]:
    before = _compat.allowed()
    _compat.set_fast_paths(True)
    yield
    _compat.set_fast_paths(before)


def outcome(codec: JwtCodec, token: str) -> TokenClaims | str:
    try:
        return codec.verify(token)
    except AuthError as exc:
        return exc.reason


def pyjwt_only(cfg: AuthConfig) -> JwtCodec:
    codec = JwtCodec(cfg)
    codec._fast = None
    return codec


@pytest.mark.parametrize("rotation", [False, True], ids=["one secret", "previous secret"])
def test_every_answer_is_the_same_as_pyjwt_alone(
    cfg: AuthConfig, fast_paths_on: None, rotation: bool
) -> None:
    if rotation:
        cfg = dataclasses.replace(
            cfg, previous_secret=OTHER, previous_secret_until=time.time() + 3600
        )
    fast, slow = JwtCodec(cfg), pyjwt_only(cfg)
    assert fast._fast is not None
    for name, token in {**valid_tokens(), **other_tokens()}.items():
        assert outcome(fast, token) == outcome(slow, token), name


def pyjwt_payload(token: str) -> dict[str, Any] | None:
    """What pyjwt alone returns for ``token`` with wsmq's options, ``None`` if it refuses."""
    try:
        payload: dict[str, Any] = jwt.decode(
            token, SECRET, algorithms=["HS256"], leeway=5.0,
            options={"require": ["sub", "iat", "exp"], "verify_aud": False, "verify_iss": False},
        )  # fmt: skip
    except jwt.InvalidTokenError:
        return None
    return payload


def test_the_fast_path_accepts_the_usual_tokens_and_only_what_pyjwt_accepts(
    cfg: AuthConfig, fast_paths_on: None
) -> None:
    fast = JwtCodec(cfg)._fast
    assert fast is not None
    for name, token in valid_tokens().items():
        assert fast.accept(token) == pyjwt_payload(token) is not None, name
    for name, token in other_tokens().items():
        accepted = fast.accept(token)
        assert accepted is None or accepted == pyjwt_payload(token), name
    unusual = ("kid header", "crit header", "previous secret", "tampered signature", "expired")
    assert all(fast.accept(other_tokens()[name]) is None for name in unusual)


def test_switched_off_or_with_issuer_or_audience_pyjwt_decides_alone(
    cfg: AuthConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: HmacFastPath, token: str) -> None:
        raise AssertionError("the fast path ran")

    monkeypatch.setattr(HmacFastPath, "accept", refuse)
    token = jwt.encode(claims(iss="me", aud="you"), SECRET, algorithm="HS256")
    before = _compat.allowed()
    _compat.set_fast_paths(False)
    try:
        assert JwtCodec(cfg).verify(token).user_id == "alice"
    finally:
        _compat.set_fast_paths(before)
    assert JwtCodec(dataclasses.replace(cfg, issuer="me")).verify(token).user_id == "alice"
    assert JwtCodec(dataclasses.replace(cfg, audience="you")).verify(token).user_id == "alice"


def test_a_key_pyjwt_refuses_gets_no_fast_path(cfg: AuthConfig) -> None:
    pem_like = "-----BEGIN PUBLIC KEY-----\n" + "A" * 64 + "\n-----END PUBLIC KEY-----"
    codec = JwtCodec(dataclasses.replace(cfg, secret=pem_like))
    assert codec._fast is None

"""A stand-in identity provider for tests: signing keys and a JWKS served on a real loopback port.

:class:`IdpKey` signs x-tokens as an identity provider would (RS256, ES256, EdDSA);
:class:`JwksServer` serves the public halves of its ``keys`` at ``/jwks.json`` on a real aiohttp
server, counts the requests, and can rotate keys, answer 500, answer garbage, or go down.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from wsmq.protocol.json_types import JsonObject, JsonValue

__all__ = ["IdpKey", "JwksServer", "Mode", "ec_key", "ed25519_key", "rsa_key"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
#: How the server answers: the JWKS, HTTP 500, a body that is not JSON, or a body too large.
Mode = Literal["ok", "error", "garbage", "huge"]


@dataclass
class IdpKey:
    """A signing key of the stand-in identity provider."""

    private: PrivateKey
    kid: str | None
    algorithm: str

    def jwk(self) -> JsonObject:
        """The public JWK (``kid`` included when set)."""
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data: JsonObject = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = OKPAlgorithm.to_jwk(public, as_dict=True)
        if self.kid is not None:
            data["kid"] = self.kid
        data["use"] = "sig"
        return data

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self,
        user_id: str,
        *,
        ttl: int = 300,
        claims: Mapping[str, JsonValue] | None = None,
        headers: Mapping[str, JsonValue] | None = None,
    ) -> str:
        """An x-token for ``user_id`` signed with this key (``kid`` in the header)."""
        now = int(time.time())
        payload: JsonObject = {"sub": f"users/{user_id}", "iat": now, "exp": now + ttl}
        payload.update(claims or {})
        header: JsonObject = {"kid": self.kid} if self.kid is not None else {}
        header.update(headers or {})
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers=header)


def rsa_key(kid: str | None = "rsa-1", bits: int = 2048) -> IdpKey:
    """A fresh RSA key signing RS256."""
    return IdpKey(rsa.generate_private_key(65537, bits), kid, "RS256")


def ec_key(kid: str | None = "ec-1") -> IdpKey:
    """A fresh EC P-256 key signing ES256."""
    return IdpKey(ec.generate_private_key(ec.SECP256R1()), kid, "ES256")


def ed25519_key(kid: str | None = "ed-1") -> IdpKey:
    """A fresh Ed25519 key signing EdDSA."""
    return IdpKey(ed25519.Ed25519PrivateKey.generate(), kid, "EdDSA")


@dataclass
class JwksServer:
    """A JWKS endpoint on ``127.0.0.1``: ``await start()``, then ``url``; ``await stop()``.

    Change ``keys`` to rotate, ``mode`` to fail; ``requests`` counts the GETs answered.
    :meth:`down` stops listening (connections refused) and :meth:`up` listens again on the
    same port.
    """

    keys: list[IdpKey] = field(default_factory=list)
    mode: Mode = "ok"
    requests: int = 0
    extra_jwks: list[JsonObject] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The JWKS URL."""
        return f"http://127.0.0.1:{self.port}/jwks.json"

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.mode == "error":
            return web.Response(status=500, text="internal error")
        if self.mode == "garbage":
            return web.Response(body=b"<html>not a jwks", content_type="text/html")
        if self.mode == "huge":
            return web.Response(body=b" " * (1 << 20), content_type="application/json")
        doc = {"keys": [key.jwk() for key in self.keys] + self.extra_jwks}
        return web.Response(text=json.dumps(doc), content_type="application/json")

    async def start(self) -> JwksServer:
        """Listen (on a free port the first time, on the same port after :meth:`down`)."""
        app = web.Application()
        app.router.add_get("/jwks.json", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])
        return self

    async def down(self) -> None:
        """Stop listening: fetches get "connection refused"."""
        await self.stop()

    async def up(self) -> None:
        """Listen again on the same port."""
        await self.start()

    async def stop(self) -> None:
        """Stop the server."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

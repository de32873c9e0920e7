"""A real node verifying x-tokens from an identity provider's JWKS (a real HTTP server).

The node has no secret: it only verifies. Tokens are signed in the test with freshly generated
keys; the access token still comes from the users file. Auth does not depend on the Redis
deployment, so these run on the single server only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.gateway import Gateway
from wsmq.queue import Queues
from wsmq.testing.jwks import IdpKey, JwksServer, ec_key, rsa_key

from .conftest import MakeUser, SpawnNode, StartNode, connect, recv, recv_type, subscribe, wait_for

pytestmark = pytest.mark.backends("single")  # auth is the same on every Redis deployment

RSA = rsa_key("rsa-1")
EC = ec_key("ec-1")


@pytest.fixture
async def idp() -> AsyncIterator[JwksServer]:
    server = await JwksServer(keys=[RSA, EC]).start()
    yield server
    await server.stop()


async def jwks_node(start_node: StartNode, idp: JwksServer, **overrides: Any) -> Gateway:
    settings: dict[str, Any] = {
        "secret": None,
        "jwks_url": idp.url,
        "jwks_min_refetch_interval": 0.3,
        "jwks_cache_ttl": 600.0,
        "issuer": "https://idp.example.com/",
        "audience": "wsmq",
    }
    return await start_node(**{**settings, **overrides})


CLAIMS = {"iss": "https://idp.example.com/", "aud": "wsmq"}


async def handshake(
    http: aiohttp.ClientSession, node: Gateway, x_token: str, access_token: str
) -> tuple[int, dict[str, Any]]:
    """A raw upgrade request that must be refused: its status and JSON body."""
    assert node.http_url is not None
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "x-token": x_token,
        "x-access-token": access_token,
    }
    async with asyncio.timeout(5), http.get(f"{node.http_url}/", headers=headers) as resp:
        assert resp.status != 101
        assert resp.content_type == "application/json"
        body: dict[str, Any] = json.loads(await resp.text())
        return resp.status, body


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


async def test_idp_tokens_open_sockets_that_deliver(
    start_node: StartNode,
    make_user: MakeUser,
    idp: JwksServer,
    http: aiohttp.ClientSession,
    queues: Queues,
) -> None:
    node = await jwks_node(start_node, idp)
    alice = await make_user()
    await queues.create_queue(alice.user_id)
    for key in (RSA, EC):
        token = key.sign(alice.user_id, claims=CLAIMS)
        ws = await connect(
            http, node, headers={"x-token": token, "x-access-token": alice.access_token}
        )
        await subscribe(ws, alice.user_id)
        await queues.send_message(alice.user_id, f"hello {key.algorithm}")
        frame = await recv_type(ws, "message")
        assert frame["message"] == f"hello {key.algorithm}"
        await ws.send_str(f"/ack/{alice.user_id}/{frame['id']}")
        # In-band /refresh with another IdP key's token.
        other = EC if key is RSA else RSA
        await ws.send_str(f"/refresh {other.sign(alice.user_id, ttl=600, claims=CLAIMS)}")
        assert (await recv_type(ws, "refreshed"))["exp"] > time.time() + 500
        await ws.close()
    # Browsers: the first-message /auth path checks the same way.
    ws = await connect(http, node)
    await ws.send_str(f"/auth {RSA.sign(alice.user_id, claims=CLAIMS)} {alice.access_token}")
    assert (await recv(ws))["type"] == "authenticated"
    await ws.close()
    assert idp.requests == 1


async def test_handshake_rejections_are_401_json(
    start_node: StartNode, make_user: MakeUser, idp: JwksServer, http: aiohttp.ClientSession
) -> None:
    node = await jwks_node(start_node, idp)
    alice = await make_user()
    uid, access = alice.user_id, alice.access_token
    now = int(time.time())
    body = {"sub": f"users/{uid}", "iat": now, "exp": now + 60, **CLAIMS}
    payload = b64(json.dumps(body).encode())
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'rsa-1'}).encode())}.{payload}"
    confused = hmac.new(RSA.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    cases = {
        "hs256 with the public key": (f"{signing_input}.{b64(confused)}", "invalid_signature"),
        "alg none": (
            f"{b64(json.dumps({'alg': 'none', 'kid': 'rsa-1'}).encode())}.{payload}.",
            "invalid_signature",
        ),
        "rs256 for the ec key": (
            RSA.sign(uid, claims=CLAIMS, headers={"kid": "ec-1"}),
            "invalid_signature",
        ),
        "unknown kid": (rsa_key("nobody").sign(uid, claims=CLAIMS), "invalid_signature"),
        "wrong audience": (RSA.sign(uid, claims={**CLAIMS, "aud": "other"}), "invalid_claims"),
        "no issuer": (RSA.sign(uid, claims={"aud": "wsmq"}), "invalid_claims"),
        "expired": (RSA.sign(uid, ttl=-60, claims=CLAIMS), "expired"),
    }
    for name, (token, reason) in cases.items():
        status, answer = await handshake(http, node, token, access)
        assert (status, answer["error"]) == (401, reason), name
    # A valid IdP token does not replace the access token.
    status, answer = await handshake(http, node, RSA.sign(uid, claims=CLAIMS), "x" * 43)
    assert (status, answer["error"]) == (401, "invalid_credentials")


async def test_rotation_and_a_failing_jwks(
    start_node: StartNode,
    make_user: MakeUser,
    idp: JwksServer,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsmq.auth")
    node = await jwks_node(start_node, idp)
    alice = await make_user()
    headers = {"x-access-token": alice.access_token}

    async def opens(key: IdpKey) -> bool:
        token = key.sign(alice.user_id, claims=CLAIMS)
        try:
            ws = await connect(http, node, headers={**headers, "x-token": token})
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 401
            return False
        await ws.close()
        return True

    assert await opens(RSA)
    assert idp.requests == 1
    # A new key appears: its first tokens wait for the re-fetch interval, then one fetch.
    new = rsa_key("rsa-2")
    idp.keys.append(new)
    await wait_for(lambda: opens(new), timeout=10)
    assert idp.requests == 2
    # The JWKS fails: cached keys keep working, a key it never served is refused.
    idp.mode = "error"
    third = ec_key("ec-3")
    idp.keys.append(third)
    start = idp.requests

    async def three_failed_fetches() -> bool:
        assert not await opens(third)
        assert await opens(RSA)
        return idp.requests >= start + 3

    await wait_for(three_failed_fetches, timeout=10)
    outages = [r for r in caplog.records if getattr(r, "event", None) == "jwks_unavailable"]
    assert len(outages) == 1
    # It recovers: the new key is fetched at the next interval.
    idp.mode = "ok"
    await wait_for(lambda: opens(third), timeout=10)


async def test_a_verify_only_node_serves_no_login(
    start_node: StartNode, make_user: MakeUser, idp: JwksServer, http: aiohttp.ClientSession
) -> None:
    node = await jwks_node(start_node, idp)

    async def prefetched() -> bool:
        return idp.requests == 1

    await wait_for(prefetched)  # the node fetched the JWKS at start, before any token
    alice = await make_user()
    assert node.http_url is not None
    for path in ("/auth/login", "/auth/token"):
        async with http.post(f"{node.http_url}{path}", json={"userName": alice.name}) as resp:
            assert resp.status == 404, path
    # Logout still revokes the access token.
    async with http.post(
        f"{node.http_url}/auth/logout",
        json={"userId": alice.user_id},
        headers={"x-access-token": alice.access_token},
    ) as resp:
        assert resp.status == 200
    status, answer = await handshake(
        http, node, RSA.sign(alice.user_id, claims=CLAIMS), alice.access_token
    )
    assert (status, answer["error"]) == (401, "invalid_credentials")


async def test_wsmq_serve_takes_the_jwks_settings(
    spawn_node: SpawnNode,
    redis_url: str,
    make_user: MakeUser,
    idp: JwksServer,
    http: aiohttp.ClientSession,
) -> None:
    # A `wsmq serve` process with a secret (its own HS256 tokens) and the IdP's JWKS.
    node = await spawn_node(redis_url, "--jwks-url", idp.url, "--jwks-cache-ttl", "300")
    alice = await make_user()
    headers = {"x-access-token": alice.access_token}
    for token in (EC.sign(alice.user_id), alice.x_token):
        async with asyncio.timeout(5):
            ws = await http.ws_connect(node.url, headers={**headers, "x-token": token})
        await ws.close()
    assert idp.requests == 1
    assert "no signing key" not in node.log_text()


async def test_a_node_with_a_pem_public_key(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    pem = tmp_path / "idp.pem"
    pem.write_bytes(EC.public_pem())
    node = await start_node(secret=None, algorithm="ES256", public_key_file=str(pem))
    alice = await make_user()
    uid, access = alice.user_id, alice.access_token
    ws = await connect(http, node, headers={"x-token": EC.sign(uid), "x-access-token": access})
    await ws.close()
    confused = hmac.new(EC.public_pem(), b"", hashlib.sha256)  # the key bytes as an HMAC secret
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    payload = b64(json.dumps({"sub": uid, "iat": now, "exp": now + 60}).encode())
    confused.update(f"{header}.{payload}".encode())
    for token in (RSA.sign(uid), alice.x_token, f"{header}.{payload}.{b64(confused.digest())}"):
        status, answer = await handshake(http, node, token, access)
        assert (status, answer["error"]) == (401, "invalid_signature")
    assert node.http_url is not None
    async with http.post(f"{node.http_url}/auth/login", json={"userName": alice.name}) as resp:
        assert resp.status == 404

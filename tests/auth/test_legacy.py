"""tokens2 access tokens (opt-in migration), checked against vectors made by Node and OpenSSL."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from bson import ObjectId
from mongomock_motor import AsyncMongoMockClient

from wsmq.auth import AuthConfig, Authenticator, AuthError, MongoUserStore, issue_jwt
from wsmq.auth.legacy import decrypt_tokens2, encrypt_tokens2, evp_bytes_to_key

from .conftest import CHEAP, SECRET

USER_ID = "5f1d7f1e2a3b4c5d6e7f8091"
PLAIN = json.dumps({"_id": USER_ID, "password": "hunter2", "timestamp": 1500000000000})

NODE_SCRIPT = (
    "const c = require('crypto').createCipher('aes-256-ctr', process.argv[1]);"
    "process.stdout.write(c.update(process.argv[2], 'utf8', 'hex') + c.final('hex'));"
)


def node_vector(secret: str, plaintext: str) -> str:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    out = subprocess.run(
        ["node", "--no-deprecation", "-e", NODE_SCRIPT, secret, plaintext],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:  # Node >= 22 removed createCipher
        pytest.skip(f"this node has no crypto.createCipher: {out.stderr.strip()[:200]}")
    return out.stdout.strip()


def openssl_vector(secret: str, plaintext: str) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    out = subprocess.run(
        ["openssl", "enc", "-aes-256-ctr", "-md", "md5", "-nosalt", "-pass", f"pass:{secret}"],
        input=plaintext.encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    return out.stdout.hex()


@pytest.fixture(params=["node", "openssl"])
def vector(request: pytest.FixtureRequest) -> str:
    make = node_vector if request.param == "node" else openssl_vector
    return make(SECRET, PLAIN)


def test_decrypts_foreign_vector(vector: str) -> None:
    assert decrypt_tokens2(vector, SECRET) == json.loads(PLAIN)
    # CTR keystream from EVP_BytesToKey: the same for every token (why tokens2 was unsafe).
    key, iv = evp_bytes_to_key(SECRET.encode())
    assert (len(key), len(iv)) == (32, 16)


def test_our_encryption_matches_node() -> None:
    payload = {"_id": USER_ID, "timestamp": 1}
    text = json.dumps(payload, separators=(",", ":"))
    assert encrypt_tokens2(payload, SECRET) == node_vector(SECRET, text)


@pytest.mark.parametrize("junk", ["", "zz", "00", "0" * 64, "abc", "ü" * 8])
def test_junk_is_malformed(junk: str) -> None:
    with pytest.raises(AuthError) as info:
        decrypt_tokens2(junk, SECRET)
    assert info.value.reason == "malformed"


async def legacy_env(vector: str, legacy: bool) -> tuple[Authenticator, str]:
    db: Any = AsyncMongoMockClient()["legacy"]
    # A user document as the original left it: ObjectId, plaintext access token, no hash.
    doc: dict[str, Any] = {
        "_id": ObjectId(USER_ID),
        "userName": "old-timer",
        "password": "hunter2",
        "accessToken": vector,
    }
    await db["users"].insert_one(doc)
    cfg = AuthConfig(secret=SECRET, legacy_tokens2=legacy)
    return Authenticator(cfg, MongoUserStore(db, hasher=CHEAP)), issue_jwt(USER_ID, cfg)[0]


async def test_legacy_token_accepted_only_when_enabled(
    vector: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth, token = await legacy_env(vector, legacy=True)
    assert "legacy tokens2" in caplog.text  # turning it on warns
    user = await auth.verify(token, vector)
    assert (user.user_id, user.user_name) == (USER_ID, "old-timer")

    off, token = await legacy_env(vector, legacy=False)
    with pytest.raises(AuthError) as info:
        await off.verify(token, vector)
    assert info.value.reason == "invalid_credentials"


async def test_forged_legacy_tokens_are_refused(vector: str) -> None:
    auth, _ = await legacy_env(vector, legacy=True)
    # CTR is malleable: flip bytes to claim another _id; it no longer equals the stored token.
    other_id = "000000000000000000000001"
    wanted = PLAIN.replace(USER_ID, other_id).encode()
    pairs = zip(bytes.fromhex(vector), PLAIN.encode(), wanted, strict=True)
    forged = bytes(a ^ b ^ c for a, b, c in pairs).hex()
    assert decrypt_tokens2(forged, SECRET)["_id"] == other_id
    token = issue_jwt(other_id, auth.config)[0]
    with pytest.raises(AuthError):
        await auth.verify(token, forged)
    # A valid legacy token of this user, presented with another user's x-token, is refused.
    with pytest.raises(AuthError):
        await auth.verify(issue_jwt("5f1d7f1e2a3b4c5d6e7f8092", auth.config)[0], vector)


async def test_rotating_retires_the_plaintext_token(vector: str) -> None:
    auth, token = await legacy_env(vector, legacy=True)
    new = await auth.store.set_access_token(USER_ID)
    doc = await auth.store.database["users"].find_one({"_id": ObjectId(USER_ID)})  # type: ignore[attr-defined]
    assert "accessToken" not in doc
    with pytest.raises(AuthError):
        await auth.verify(token, vector)
    assert (await auth.verify(token, new)).user_id == USER_ID

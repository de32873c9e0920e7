"""Auth test fixtures: cheap scrypt, both user stores (and real MongoDB when configured)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wsmq.auth import AuthConfig, FileUserStore, MongoUserStore, PasswordHasher, UserStore

SECRET = "test-secret-0123456789-abcdefghijklmnop"
CHEAP = PasswordHasher(n=2**4, r=8, p=1)
MONGO_URL = os.environ.get("WSMQ_TEST_MONGO_URL")


@pytest.fixture
def cfg() -> AuthConfig:
    return AuthConfig(secret=SECRET, scrypt_n=2**4)


def _mongomock_store() -> MongoUserStore:
    from mongomock_motor import AsyncMongoMockClient

    return MongoUserStore(AsyncMongoMockClient()["wsmq_test"], hasher=CHEAP)


async def _real_mongo_store(driver: str, name: str) -> MongoUserStore:
    if not MONGO_URL:
        pytest.skip("real MongoDB test: set WSMQ_TEST_MONGO_URL=mongodb://... to run it")
    from wsmq.auth.mongo_store import open_mongo_store

    store = open_mongo_store(MONGO_URL, f"wsmq_test_{name}", driver=driver, hasher=CHEAP)
    await store.collection.delete_many({})
    return store


@pytest.fixture(params=["file", "mongomock", "motor", "pymongo"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    """Every user store implementation (real MongoDB ones skip without WSMQ_TEST_MONGO_URL)."""
    kind = request.param
    s: UserStore
    if kind == "file":
        s = FileUserStore(tmp_path / "users.json", hasher=CHEAP)
    elif kind == "mongomock":
        s = _mongomock_store()
    else:
        s = await _real_mongo_store(kind, kind)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def file_store(tmp_path: Path) -> FileUserStore:
    return FileUserStore(tmp_path / "users.json", hasher=CHEAP)

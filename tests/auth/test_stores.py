"""UserStore behaviour, the same for the users file, mongomock and (optionally) real MongoDB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wsmq.auth import (
    FileUserStore,
    InvalidUserData,
    MongoUserStore,
    UserExists,
    UserNotFound,
    UserStore,
    UserStoreError,
    open_user_store,
    verify_password,
)
from wsmq.auth.users import new_user_id, user_from_doc


async def test_create_get_and_list(store: UserStore) -> None:
    alice, _ = await store.create("alice", "pw", ["a", "b", "a"], ["c"])
    bob, _ = await store.create("bob", "pw")
    assert len(alice.id) == 24 and int(alice.id, 16) >= 0  # ObjectId hex for every store
    got = await store.get(alice.id)
    assert got is not None and got.user_name == "alice"
    assert got.queues == ("a", "b") and got.publish == ("c",) and not got.disabled
    by_name = await store.get_by_name("bob")
    assert by_name is not None and by_name.id == bob.id
    assert [u.user_name for u in await store.list()] == ["alice", "bob"]
    assert await store.get(new_user_id()) is None
    assert await store.get("not-an-object-id") is None
    assert await store.get_by_name("carol") is None
    assert await store.ping()


async def test_duplicate_name_is_refused(store: UserStore) -> None:
    await store.create("alice", "pw")
    with pytest.raises(UserExists):
        await store.create("alice", "other")
    assert len(await store.list()) == 1


@pytest.mark.parametrize(
    ("name", "queues"),
    [
        ("", []),
        (" padded", []),
        ("x" * 129, []),
        ("tab\tname", []),
        ("ok", ["bad name"]),
        ("ok", ["abc\n"]),
    ],
)
async def test_invalid_user_data(store: UserStore, name: str, queues: list[str]) -> None:
    with pytest.raises(InvalidUserData):
        await store.create(name, "pw", queues)
    assert await store.list() == []


async def test_password_is_hashed_with_scrypt(store: UserStore) -> None:
    user, _ = await store.create("alice", "correct horse")
    stored = await store.get(user.id)
    assert stored is not None and stored.password_hash is not None
    assert stored.password_hash.startswith("$scrypt$ln=4,r=8,p=1$")
    assert "correct horse" not in stored.password_hash
    assert verify_password("correct horse", stored.password_hash)
    assert not verify_password("wrong", stored.password_hash)
    await store.set_password(user.id, "new")
    stored = await store.get(user.id)
    assert stored is not None and verify_password("new", stored.password_hash)
    assert stored.access_token_hash is None  # password change revokes


async def test_disable_and_enable(store: UserStore) -> None:
    user, _ = await store.create("alice", "pw")
    await store.set_disabled(user.id)
    got = await store.get(user.id)
    assert got is not None and got.disabled and got.access_token_hash is None
    await store.set_disabled(user.id, False)
    got = await store.get(user.id)
    assert got is not None and not got.disabled


async def test_updates_of_unknown_users_fail(store: UserStore) -> None:
    missing = new_user_id()
    with pytest.raises(UserNotFound):
        await store.set_access_token(missing)
    with pytest.raises(UserNotFound):
        await store.clear_access_token(missing)
    with pytest.raises(UserNotFound):
        await store.set_disabled(missing)
    with pytest.raises(UserNotFound):
        await store.set_password(missing, "pw")


async def test_open_user_store_sources(tmp_path: Path) -> None:
    with pytest.raises(UserStoreError):
        open_user_store()
    with pytest.raises(UserStoreError):
        open_user_store(users_file=tmp_path / "u.json", database=object())
    both = open_user_store(mongo_url="mongodb://127.0.0.1:1", users_file=tmp_path / "u.json")
    assert isinstance(both, MongoUserStore)  # MongoDB wins, as the gateway settings document
    await both.close()
    assert isinstance(open_user_store(users_file=tmp_path / "u.json"), FileUserStore)


async def test_open_user_store_mongo_url_uses_pymongo_async() -> None:
    from pymongo import AsyncMongoClient

    store = open_user_store(mongo_url="mongodb://127.0.0.1:1/mydb")
    try:
        assert isinstance(store.database.client, AsyncMongoClient)  # type: ignore[attr-defined]
        assert store.database.name == "mydb"  # type: ignore[attr-defined]
    finally:
        await store.close()


async def test_open_mongo_store_with_motor() -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    from wsmq.auth.mongo_store import open_mongo_store

    store = open_mongo_store("mongodb://127.0.0.1:1", "other", driver="motor")
    try:
        assert isinstance(store.database.client, AsyncIOMotorClient)
        assert store.database.name == "other"
    finally:
        await store.close()
    with pytest.raises(UserStoreError):
        open_mongo_store("mongodb://127.0.0.1:1", driver="nope")


async def test_ping_reports_an_unreachable_mongodb_quickly() -> None:
    from wsmq.auth.mongo_store import open_mongo_store

    store = open_mongo_store("mongodb://127.0.0.1:1/x")
    store.ping_timeout = 0.2
    try:
        async with asyncio.timeout(3):
            assert await store.ping() is False
    finally:
        await store.close()


def test_users_with_equal_queue_lists_share_one_tuple() -> None:
    names = [f"q{i}" for i in range(1000)]
    a = user_from_doc({"_id": "u1", "queues": list(names), "publish": ["p"]})
    b = user_from_doc({"_id": "u1", "queues": list(names), "publish": ["p"]})
    assert a.queues == tuple(names) and a.queues is b.queues  # one copy for every socket
    assert a.publish is b.publish
    c = user_from_doc({"_id": "u2", "queues": names[:10]})
    assert c.queues == tuple(names[:10])

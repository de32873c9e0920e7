"""API keys in both stores: hashed, listed without secrets, revocable; beside the users."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.auth import FileUserStore, MongoUserStore, UserStore
from wsmq.auth.apikeys import (
    ApiKeyExists,
    ApiKeyIndex,
    ApiKeyNotFound,
    InvalidApiKeyData,
    api_key_store,
    hash_api_key,
    new_api_key,
)
from wsmq.testing.users import CHEAP_HASHER

from .conftest import SECRET, Api


@pytest.fixture(params=["file", "mongomock"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    s: UserStore
    if request.param == "file":
        s = FileUserStore(tmp_path / "users.json", hasher=CHEAP_HASHER)
    else:
        from mongomock_motor import AsyncMongoMockClient

        s = MongoUserStore(AsyncMongoMockClient()["wsmq_test"], hasher=CHEAP_HASHER)
    yield s
    await s.close()


async def test_add_list_revoke(store: UserStore) -> None:
    keys = api_key_store(store)
    record, key = await keys.add("ci", "read,publish")
    assert key.startswith("wsmq_") and len(key) >= 48
    assert record.scopes == ("publish", "read")  # canonical order
    assert record.key_hash == hash_api_key(key)
    listed = await keys.list()
    assert [k.public_json() for k in listed] == [
        {"name": "ci", "scopes": ["publish", "read"], "created": record.created}
    ]
    with pytest.raises(ApiKeyExists):
        await keys.add("ci", "read")
    await keys.add("another", ["admin"])
    assert [k.name for k in await keys.list()] == ["another", "ci"]
    await keys.revoke("ci")
    assert [k.name for k in await keys.list()] == ["another"]
    with pytest.raises(ApiKeyNotFound):
        await keys.revoke("ci")


async def test_bad_names_and_scopes(store: UserStore) -> None:
    keys = api_key_store(store)
    for name, scopes in (("bad name", "read"), ("", "read"), ("x" * 65, "read"), ("ok", ""),
                         ("ok", "read,root"), ("ok", [])):  # fmt: skip
        with pytest.raises(InvalidApiKeyData):
            await keys.add(name, scopes)
    assert await keys.list() == []


async def test_keys_and_users_do_not_disturb_each_other(store: UserStore) -> None:
    keys = api_key_store(store)
    await keys.add("k1", "read")
    user, _ = await store.create("alice", "pw-123456")
    await keys.add("k2", "admin")
    await store.set_disabled(user.id, True)
    assert [k.name for k in await keys.list()] == ["k1", "k2"]
    assert [u.user_name for u in await store.list()] == ["alice"]


async def test_file_holds_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = FileUserStore(path, hasher=CHEAP_HASHER)
    _, key = await api_key_store(store).add("ci", "read")
    raw = path.read_text()
    assert key not in raw and hash_api_key(key) in raw
    # a second process (a node) sees it; a user write keeps it
    other = FileUserStore(path, hasher=CHEAP_HASHER)
    await other.create("bob", "pw-123456")
    assert [k.name for k in await api_key_store(store).list()] == ["ci"]
    assert json.loads(path.read_text())["apikeys"][0]["_id"] == "ci"


async def test_index_keeps_last_good_copy_when_the_store_fails() -> None:
    calls = 0

    async def load() -> list:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("store down")
        from wsmq.auth.apikeys import ApiKey

        return [ApiKey("k", hash_api_key("wsmq_secret"), ("read",), 0)]

    now = [0.0]
    index = ApiKeyIndex(load, refresh=1.0, clock=lambda: now[0])
    assert (await index.check("wsmq_secret")) is not None
    now[0] = 5.0
    assert (await index.check("wsmq_secret")) is not None  # the failure kept the copy
    assert calls == 2
    assert (await index.check("wsmq_other")) is None

    async def failing() -> list:  # type: ignore[type-arg]
        raise OSError("down")

    with pytest.raises(OSError):
        await ApiKeyIndex(failing).check("wsmq_secret")


async def test_a_node_on_mongodb_checks_keys_from_the_apikeys_collection(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    from mongomock_motor import AsyncMongoMockClient

    from wsmq.gateway import serve

    database: Any = AsyncMongoMockClient()["wsmq_node"]
    store = MongoUserStore(database, hasher=CHEAP_HASHER)
    _, key = await api_key_store(store).add("svc", "read")
    assert await database["apikeys"].count_documents({}) == 1
    assert key not in str(await database["apikeys"].find_one({}))
    async with serve(
        host="127.0.0.1", port=0, redis_url=redis_url, secret=SECRET, user_store=store
    ) as node:
        api = Api(http, str(node.http_url), {"svc": key})
        assert (await api.call("GET", "/api/queues", "svc"))[0] == 200
        assert (await api.call("GET", "/api/queues", new_api_key()))[0] == 401
        await api_key_store(store).revoke("svc")
        async with asyncio.timeout(5):
            while (await api.call("GET", "/api/queues", "svc"))[0] != 401:
                await asyncio.sleep(0.2)


async def test_a_stale_index_loads_once_for_a_burst_of_requests() -> None:
    # A flood of requests (valid keys or not) arriving while the copy is stale must cost one
    # store read, not one per request: the store is the users' store too.
    from wsmq.auth.apikeys import ApiKey

    calls = 0
    release = asyncio.Event()

    async def load() -> list[ApiKey]:
        nonlocal calls
        calls += 1
        await release.wait()
        return [ApiKey("k", hash_api_key("wsmq_secret"), ("read",), 0)]

    async def release_after_the_burst() -> None:
        release.set()  # tasks run in creation order: every check is waiting by now

    now = [0.0]
    index = ApiKeyIndex(load, refresh=1.0, clock=lambda: now[0])
    for stale_at in (0.0, 5.0):  # the first load, then a stale copy
        now[0] = stale_at
        release.clear()
        checks = [asyncio.create_task(index.check("wsmq_secret")) for _ in range(20)]
        checks += [asyncio.create_task(index.check("wsmq_unknown")) for _ in range(20)]
        releaser = asyncio.create_task(release_after_the_burst())
        async with asyncio.timeout(5):
            found = await asyncio.gather(*checks)
        await releaser
        assert [k is not None for k in found] == [True] * 20 + [False] * 20
    assert calls == 2


async def test_mongodb_driver_errors_are_user_store_errors_answered_503(
    redis_url: str, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MongoDB outage on revoke (users) and on the API key store is 503 ``unavailable``,
    not a 500 with a PyMongo traceback."""
    from mongomock_motor import AsyncMongoMockClient
    from pymongo.errors import ServerSelectionTimeoutError

    from wsmq.auth.errors import UserStoreError
    from wsmq.gateway import serve

    database: Any = AsyncMongoMockClient()["wsmq_outage"]
    store = MongoUserStore(database, hasher=CHEAP_HASHER)
    user, _ = await store.create("alice", "pw-alice-0123")
    keys = api_key_store(store)
    _, key = await keys.add("ops", "admin")

    def down(*args: object, **kwargs: object) -> Any:
        raise ServerSelectionTimeoutError("no servers")

    async with serve(
        host="127.0.0.1", port=0, redis_url=redis_url, secret=SECRET, user_store=store
    ) as node:
        api = Api(http, str(node.http_url), {"ops": key})
        assert (await api.call("GET", "/api/me", "ops"))[0] == 200  # the key index is loaded
        monkeypatch.setattr(store.collection, "find_one", down)
        status, body, _ = await api.call("POST", f"/api/users/{user.id}/revoke", "ops")
        assert (status, body["error"]) == (503, "unavailable")
        monkeypatch.undo()
        monkeypatch.setattr(store.collection, "update_one", down)
        status, body, _ = await api.call("POST", f"/api/users/{user.id}/revoke", "ops")
        assert (status, body["error"]) == (503, "unavailable")

    apikeys: Any = keys
    for method, call in (
        ("find", keys.list),
        ("insert_one", lambda: keys.add("other", "read")),
        ("delete_one", lambda: keys.revoke("ops")),
    ):
        monkeypatch.setattr(apikeys.collection, method, down)
        with pytest.raises(UserStoreError, match="ServerSelectionTimeoutError"):
            await call()
    for method, user_call in (
        ("find", store.list),
        ("find_one", lambda: store.get_by_name("alice")),
        ("insert_one", lambda: store.create("bob", "pw-bob-012345")),
    ):
        monkeypatch.setattr(store.collection, method, down)
        with pytest.raises(UserStoreError, match="ServerSelectionTimeoutError"):
            await user_call()

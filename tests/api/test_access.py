"""Every endpoint checks its scope: no key 401, unknown key 401, wrong scope 403, right one in."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from wsmq.api import ROUTES
from wsmq.auth import FileUserStore
from wsmq.auth.apikeys import ApiKey, ApiKeyIndex, api_key_store, hash_api_key, new_api_key
from wsmq.queue import Queues

from .conftest import KEY_SCOPES, Api, StartNode


def _path(path: str) -> str:
    return path.replace("{q}", "q1").replace("{id}", "0" * 24)


async def test_no_key_and_unknown_keys_are_401(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    for method, path, _scope, _ in ROUTES:
        for key in (None, new_api_key(), "not-a-key", "x" * 300):
            status, body, resp = await api.call(method, _path(path), key)
            assert status == 401, (method, path, key, body)
            assert body["error"] == "unauthorized"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await api.call(
        "GET", "/api/queues", None, headers={"Authorization": "Basic dXNlcjpwYXNz"}
    )
    assert status == 401


async def test_each_scope_opens_exactly_its_endpoints(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    for method, path, scope, _ in ROUTES:
        for name, scopes in KEY_SCOPES.items():
            status, body, _ = await api.call(
                method, _path(path), name, json={"message": "m"} if method != "GET" else None
            )
            allowed = scope is None or scope in scopes.split(",")
            if allowed:
                assert status not in (401, 403), (method, path, name, body)
            else:
                assert status == 403, (method, path, name, body)
                assert body["error"] == "forbidden"
                assert scope in body["message"]


async def test_me_names_the_key(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/me", "reader")
    assert status == 200
    assert body == {"name": "reader", "scopes": ["read"]}


async def test_openapi_needs_no_key(api: Api) -> None:
    status, body, _ = await api.call("GET", "/api/openapi.json", None)
    assert status == 200
    assert body["openapi"].startswith("3.1")


async def test_revoked_key_is_refused_within_the_refresh(
    api: Api, user_store: FileUserStore
) -> None:
    assert (await api.call("GET", "/api/queues", "reader"))[0] == 200
    await api_key_store(user_store).revoke("reader")
    async with asyncio.timeout(5):
        while (await api.call("GET", "/api/queues", "reader"))[0] != 401:
            await asyncio.sleep(0.2)


async def test_rate_limit_per_key_429_with_retry_after(
    start_node: StartNode, http: aiohttp.ClientSession, keys: dict[str, str]
) -> None:
    node = await start_node(api_rate_limit=3)
    assert node.http_url is not None
    api = Api(http, node.http_url, keys)
    statuses = [(await api.call("GET", "/api/me", "reader"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body, resp = await api.call("GET", "/api/me", "reader")
    assert status == 429
    assert body["error"] == "rate_limited"
    assert int(resp.headers["Retry-After"]) >= 1
    # another key has its own budget
    assert (await api.call("GET", "/api/me", "admin"))[0] == 200


async def test_api_off_mounts_nothing(start_node: StartNode, http: aiohttp.ClientSession) -> None:
    node = await start_node(api=False)
    async with http.get(f"{node.http_url}/api/queues") as resp:
        assert resp.status == 404
    async with http.get(f"{node.http_url}/api/openapi.json") as resp:
        assert resp.status == 404


async def test_routes_prefix_applies(
    start_node: StartNode, http: aiohttp.ClientSession, keys: dict[str, str]
) -> None:
    node = await start_node(routes_prefix="/wsmq")
    api = Api(http, f"{node.http_url}/wsmq", keys)
    assert (await api.call("GET", "/api/me", "reader"))[0] == 200
    status, doc, _ = await api.call("GET", "/api/openapi.json", None)
    assert status == 200 and "/wsmq/api/queues" in doc["paths"]


@pytest.mark.parametrize("known", [True, False])
async def test_known_and_unknown_keys_do_the_same_work(known: bool) -> None:
    """A miss takes the path a hit takes: one hash, one lookup, one constant-time compare,
    and no store read (the store is read on the refresh timer only)."""
    loads = 0
    real = new_api_key()

    async def load() -> list[ApiKey]:
        nonlocal loads
        loads += 1
        return [ApiKey("k", hash_api_key(real), ("read",), 0)]

    index = ApiKeyIndex(load, refresh=3600)
    presented = real if known else new_api_key()
    results = [await index.check(presented) for _ in range(50)]
    assert loads == 1
    assert all((r is not None) == known for r in results)


async def test_requests_counted_in_metrics(api: Api, http: aiohttp.ClientSession) -> None:
    await api.call("GET", "/api/queues", "reader")
    await api.call("GET", "/api/queues", "publisher")
    await api.call("GET", "/api/queues", None)
    async with http.get(f"{api.base}/metrics") as resp:
        text = await resp.text()
    assert 'wsmq_api_requests_total{operation="list_queues",status="200"} 1.0' in text
    assert 'wsmq_api_requests_total{operation="list_queues",status="403"} 1.0' in text
    assert 'wsmq_api_requests_total{operation="list_queues",status="401"} 1.0' in text


async def test_bad_keys_rate_limited_per_address(
    start_node: StartNode, http: aiohttp.ClientSession, keys: dict[str, str]
) -> None:
    node = await start_node(api_rate_limit=3)
    assert node.http_url is not None
    api = Api(http, node.http_url, keys)
    statuses = [(await api.call("GET", "/api/me", new_api_key()))[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    status, body, resp = await api.call("GET", "/api/me", None)
    assert (status, body["error"]) == (429, "rate_limited") and "Retry-After" in resp.headers
    assert (await api.call("GET", "/api/me", "reader"))[0] == 200  # a valid key: its own budget

"""HTTP API fixtures: a real node on a real port, real Redis, keys of every scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.auth import FileUserStore
from wsmq.auth.apikeys import api_key_store
from wsmq.gateway import Gateway, serve
from wsmq.queue import Queues
from wsmq.testing.users import CHEAP_HASHER

SECRET = "api-test-secret-0123456789abcdef0123456789"
#: Key name -> scopes; "none" has a valid key without the scope an endpoint needs.
KEY_SCOPES = {
    "publisher": "publish",
    "reader": "read",
    "admin": "admin",
    "all": "publish,read,admin",
}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.json"


@pytest.fixture
def user_store(users_file: Path) -> FileUserStore:
    return FileUserStore(users_file, hasher=CHEAP_HASHER)


@pytest.fixture
async def keys(user_store: FileUserStore) -> dict[str, str]:
    """A key per entry of :data:`KEY_SCOPES`: name -> the key."""
    store = api_key_store(user_store)
    out: dict[str, str] = {}
    for name, scopes in KEY_SCOPES.items():
        _, key = await store.add(name, scopes)
        out[name] = key
    return out


StartNode = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def start_node(redis_url: str, users_file: Path) -> AsyncIterator[StartNode]:
    nodes: list[Gateway] = []

    async def start(**overrides: Any) -> Gateway:
        kwargs: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "redis_url": redis_url,
            "secret": SECRET,
            "users_file": str(users_file),
            "shutdown_timeout": 2.0,
            "node_announce_interval": 0.5,
        }
        kwargs.update(overrides)
        async with asyncio.timeout(10):
            gateway = await serve(**kwargs)
        nodes.append(gateway)
        return gateway

    yield start
    for gateway in nodes:
        async with asyncio.timeout(10):
            await gateway.close()


@dataclass
class Api:
    """Requests to one node's API with a chosen key."""

    http: aiohttp.ClientSession
    base: str
    keys: dict[str, str]

    async def call(
        self,
        method: str,
        path: str,
        key: str | None = "all",
        *,
        json: object = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        async with asyncio.timeout(10):
            async with self.http.request(
                method, self.base + path, json=json, data=data, headers=hdrs, params=params
            ) as resp:
                body = await resp.json(content_type=None)
                return resp.status, body, resp


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def node(start_node: StartNode) -> Gateway:
    return await start_node()


@pytest.fixture
def api(http: aiohttp.ClientSession, node: Gateway, keys: dict[str, str]) -> Api:
    assert node.http_url is not None
    return Api(http, node.http_url, keys)


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(redis_url)
    yield q
    await q.close()

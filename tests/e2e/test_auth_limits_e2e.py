"""Auth rate limits of real gateway nodes (``serve()`` with settings), sharing one Redis."""

from __future__ import annotations

import asyncio

import aiohttp

from wsmq.gateway import Gateway

from .conftest import MakeUser, StartNode


async def _login(http: aiohttp.ClientSession, node: Gateway, name: str) -> int:
    assert node.http_url is not None
    body = {"userName": name, "password": "wrong"}
    async with asyncio.timeout(10):
        async with http.post(f"{node.http_url}/auth/login", json=body) as resp:
            return resp.status


async def test_nodes_count_auth_attempts_together(
    start_node: StartNode, make_user: MakeUser, redis_url: str
) -> None:
    await make_user("alice")
    a = await start_node(auth_attempts_per_ip=3, auth_window=3600)
    b = await start_node(auth_attempts_per_ip=3, auth_window=3600)
    async with aiohttp.ClientSession() as http:
        statuses = [await _login(http, node, "alice") for node in (a, b, a, b)]
        assert statuses == [401, 401, 401, 429]
        assert await _login(http, a, "nobody") == 429

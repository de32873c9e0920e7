"""``wsmq.demo.page``: the page's files, config and /auth relay as aiohttp routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from wsmq.demo.page import add_page_routes, page_app

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def test_page_under_a_prefix_same_origin(aiohttp_client: Client) -> None:
    """Mounted on a node's own app: same-origin nodes, no relay (the node has /auth)."""
    app = web.Application()
    add_page_routes(app, prefix="/page/")
    client = await aiohttp_client(app)
    resp = await client.get("/page/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "connect-src 'self';" in resp.headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        resp = await client.get(f"/page/{name}")
        assert (resp.status, resp.content_type) == (200, kind)
    resp = await client.get("/page/config.json")
    assert (await resp.json())["nodes"] == []  # the page falls back to its own origin
    resp = await client.post("/auth/login", json={})
    assert resp.status == 404  # no relay
    resp = await client.get("/page/secret.txt")
    assert resp.status == 404  # only the three files


async def test_relay_forwards_only_token_headers_and_body(aiohttp_client: Client) -> None:
    seen: dict[str, Any] = {}

    async def fake_token(request: web.Request) -> web.Response:  # stands in for a node
        seen["headers"] = dict(request.headers)
        seen["body"] = await request.json()
        return web.json_response({"error": "limited"}, status=429, headers={"Retry-After": "3"})

    node = web.Application()
    node.router.add_post("/auth/token", fake_token)
    node_client = await aiohttp_client(node)
    base = str(node_client.make_url("")).rstrip("/")
    page = await aiohttp_client(page_app(["ws://127.0.0.1:1/"], ["http://127.0.0.1:1", base]))
    resp = await page.post(
        "/auth/token",
        json={"userName": "alice"},
        headers={"x-access-token": "A", "Cookie": "s=1", "X-Other": "no"},
    )
    assert resp.status == 429 and resp.headers["Retry-After"] == "3"  # the node's answer
    assert seen["body"] == {"userName": "alice"}
    assert seen["headers"]["x-access-token"] == "A"
    assert "Cookie" not in seen["headers"] and "X-Other" not in seen["headers"]


def test_prefix_must_be_a_directory() -> None:
    with pytest.raises(ValueError, match="prefix"):
        add_page_routes(web.Application(), prefix="/page")

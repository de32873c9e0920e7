"""``wsmq.demo.page``: the page's files, config and /auth relay as aiohttp routes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from wsmq.demo.page import STATIC_DIR, add_page_routes, page_app

ROOT = Path(__file__).resolve().parents[2]
JS_CLIENT = ROOT / "clients" / "js" / "wsmq-client.js"
SYNC = ROOT / "scripts" / "sync-js-client"
#: What only a protocol implementation writes (frames, the subprotocol, the socket itself).
WIRE = ("WebSocket", "wsmq.v1", "/auth ", "/subscribe/", "/ack/", "/send/", "/refresh")

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


async def test_page_under_a_prefix_same_origin(aiohttp_client: Client) -> None:
    """Mounted on a node's own app: same-origin nodes, no relay (the node has /auth)."""
    app = web.Application()
    add_page_routes(app, prefix="/page/")
    client = await aiohttp_client(app)
    resp = await client.get("/page/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "connect-src 'self';" in resp.headers["Content-Security-Policy"]
    for name, kind in (
        ("app.js", "text/javascript"),  # ES modules need a JavaScript MIME type
        ("view.js", "text/javascript"),
        ("wsmq-client.js", "text/javascript"),
        ("style.css", "text/css"),
    ):
        resp = await client.get(f"/page/{name}")
        assert (resp.status, resp.content_type) == (200, kind)
    resp = await client.get("/page/config.json")
    assert (await resp.json())["nodes"] == []  # the page falls back to its own origin
    resp = await client.post("/auth/login", json={})
    assert resp.status == 404  # no relay
    resp = await client.get("/page/secret.txt")
    assert resp.status == 404  # only the page's files


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


async def test_page_serves_the_js_client_byte_identical(aiohttp_client: Client) -> None:
    """The page's copy of wsmq-client is the client itself: scripts/sync-js-client keeps it so."""
    copy = STATIC_DIR / "wsmq-client.js"
    assert copy.read_bytes() == JS_CLIENT.read_bytes(), "stale copy: run scripts/sync-js-client"
    client = await aiohttp_client(page_app(["ws://127.0.0.1:1/"], []))
    resp = await client.get("/wsmq-client.js")
    assert resp.content_type == "text/javascript"
    assert await resp.read() == JS_CLIENT.read_bytes()


def test_page_speaks_the_protocol_only_through_wsmq_client() -> None:
    """The page's modules import the client and hold no second copy of the protocol."""
    html = (STATIC_DIR / "index.html").read_text()
    assert '<script type="module" src="app.js"></script>' in html
    imports = {}
    for name in ("app.js", "view.js"):
        source = (STATIC_DIR / name).read_text()
        imports[name] = set(re.findall(r'^(?:import|}) .*from "([^"]+)";$', source, re.M))
        code = re.sub(r"//.*$", "", source, flags=re.MULTILINE)  # comments may name frames
        for wire in WIRE:
            assert wire not in code, (name, wire)
    assert imports == {"app.js": {"./view.js", "./wsmq-client.js"}, "view.js": set()}


def test_sync_js_client_script(tmp_path: Path) -> None:
    """--check fails on a stale copy (copying nothing); the plain run makes it identical."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(SYNC, tmp_path / "scripts")
    (tmp_path / "clients" / "js").mkdir(parents=True)
    (tmp_path / "wsmq" / "demo" / "static").mkdir(parents=True)
    src = tmp_path / "clients" / "js" / "wsmq-client.js"
    dst = tmp_path / "wsmq" / "demo" / "static" / "wsmq-client.js"
    src.write_text("export const v = 2;\n")
    dst.write_text("export const v = 1;\n")
    script = str(tmp_path / "scripts" / "sync-js-client")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, *args], capture_output=True, text=True, timeout=30)

    stale = run("--check")
    assert stale.returncode == 1 and "run scripts/sync-js-client" in stale.stderr
    assert dst.read_text() == "export const v = 1;\n"
    assert run().returncode == 0
    assert dst.read_bytes() == src.read_bytes()
    assert run("--check").returncode == 0
    assert run("--copy").returncode == 2

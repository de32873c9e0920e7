"""The JavaScript client in a real headless Chromium against two real nodes.

The page imports ``clients/js/wsmq-client.js`` served as-is (no bundler), authenticates with the
first frame (a browser cannot set headers), receives and acks, sends, and keeps receiving on the
other node after the first one is stopped gracefully (1001).
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.demo.helpers import chromium_path
from tests.e2e.conftest import MakeUser, SpawnNode
from wsmq.queue import Queues

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "clients" / "js" / "wsmq-client.js"
TIMEOUT_MS = 15_000
PAGE = """<!doctype html><meta charset="utf-8"><title>wsmq-client</title>
<script type="module">
import { connect } from "/wsmq-client.js";
window.start = (urls, xToken, accessToken, queue) => {
  const state = window.state = { ids: [], events: [], errors: [] };
  const client = window.client = connect(urls, {
    tokens: async () => [xToken, accessToken], shuffle: false, backoff: { base: 50, cap: 500 },
  });
  client.on("connected", (node) => state.events.push(["connected", node]));
  client.on("disconnected", (code, _reason, node) =>
    state.events.push(["disconnected", code, node]));
  client.on("error", (error) => state.errors.push(error.message));
  client.subscribe(queue, async (d) => { state.ids.push(d.id); await d.ack(); });
  return client.headerAuth;
};
window.loaded = true;
</script>
"""


@pytest.fixture
async def page_server() -> AsyncIterator[str]:
    """The page and the module, as a static site would serve them."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def module(_request: web.Request) -> web.Response:
        return web.Response(text=MODULE.read_text(), content_type="text/javascript")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/wsmq-client.js", module)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright Python package is not installed")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no system Chromium: apt-get install chromium (scripts/test does it)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=executable, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            browser_page = await browser.new_page()
            browser_page.set_default_timeout(TIMEOUT_MS)
            yield browser_page
        finally:
            await browser.close()


async def queue_empty(queues: Queues, qname: str, within: float) -> None:
    async with asyncio.timeout(within):
        while (await queues.get_queue_attributes(qname)).msgs:
            await asyncio.sleep(0.05)


@pytest.mark.backends("single")  # the browser client is under test, not Redis deployments
async def test_js_client_in_chromium_fails_over_and_acks_everything(
    page: Any,
    page_server: str,
    spawn_node: SpawnNode,
    make_user: MakeUser,
    queues: Queues,
    redis_url: str,
) -> None:
    first = await spawn_node(redis_url, "--allowed-origins", page_server)
    second = await spawn_node(redis_url, "--allowed-origins", page_server)
    user = await make_user(publish=("chat",))
    qname = user.user_id
    await queues.create_queue(qname, vt=5)
    await queues.create_queue("chat")
    sent = await queues.send_messages(qname, [f"before {i}" for i in range(20)])

    await page.goto(page_server + "/")
    await page.wait_for_function("window.loaded === true")
    header_auth = await page.evaluate(
        "([urls, x, a, q]) => window.start(urls, x, a, q)",
        [[first.url, second.url], user.x_token, user.access_token, qname],
    )
    assert header_auth is False  # a browser: the first frame /auth
    await page.wait_for_function("new Set(window.state.ids).size >= 20")
    await first.restart(sig=signal.SIGTERM, ready_timeout=20)  # graceful: 1001
    await page.wait_for_function(
        "(node) => window.state.events.some(([e, n]) => e === 'connected' && n === node)",
        arg=second.url,
    )
    sent += await queues.send_messages(qname, [f"after {i}" for i in range(20)])
    await page.wait_for_function("new Set(window.state.ids).size >= 40")
    msg_id = await page.evaluate("window.client.send('chat', 'from the browser')")
    assert isinstance(msg_id, str) and len(msg_id) == 32
    await queue_empty(queues, qname, within=15)
    state = await page.evaluate("window.state")
    await page.evaluate("window.client.close()")
    assert set(state["ids"]) == set(sent)
    assert state["errors"] == []
    assert ["disconnected", 1001, first.url] in state["events"], state["events"]
    assert (await queues.get_queue_attributes("chat")).msgs == 1

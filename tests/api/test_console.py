"""The operator console (``/console/``): its files and headers, and the page in a real headless
Chromium against real nodes (real Redis, real aiohttp servers on real ports, real WebSocket
clients).

Signs in (a wrong key refused), sees a queue's depth change after a publish, pauses and resumes
the refresh, peeks (a long body truncated), redrives a dead-letter queue (N, then all), edits
attributes, purges and deletes with typed confirmations, lists the nodes with their
connections, revokes a user whose socket then closes with 4403, and signs out. Screenshots
(desktop, phone, dark) go to ``artifacts/console/``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.api.console import CONSOLE_CSP, STATIC_DIR
from wsmq.auth import FileUserStore
from wsmq.queue import Queues
from wsmq.testing.users import make_users

from .conftest import SECRET, StartNode
from .console_browser import PHONE, assert_contrast, chromium, open_tab, row, sign_in

# -- the files, without a browser ------------------------------------------------------------


async def test_console_is_served_with_a_strict_csp(start_node: StartNode) -> None:
    node = await start_node(routes_prefix="/wsmq")
    base = f"{node.http_url}/wsmq/console"
    async with aiohttp.ClientSession() as http:
        async with http.get(base, allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/wsmq/console/"
        async with http.get(base + "/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert resp.headers["Content-Security-Policy"] == CONSOLE_CSP
            assert "default-src 'self'" in CONSOLE_CSP and "'unsafe-inline'" not in CONSOLE_CSP
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            html = await resp.text()
        for name in re.findall(r'(?:src|href)="([\w.]+)"', html):
            async with http.get(f"{base}/{name}") as resp:
                assert resp.status == 200, name
                assert resp.headers["Content-Security-Policy"] == CONSOLE_CSP
        async with http.get(base + "/app.js") as resp:
            assert resp.content_type == "text/javascript"
            etag = resp.headers["ETag"]
        async with http.get(base + "/app.js", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304 and await resp.read() == b""
        async with http.get(base + "/style.css", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 200  # another file, another tag
        for missing in ("/nope.js", "/..%2Fconsole.py", "/__init__.py"):
            async with http.get(base + missing) as resp:
                assert resp.status == 404, missing


async def test_console_off_with_the_api(start_node: StartNode) -> None:
    node = await start_node(api=False)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node.http_url}/console/") as resp:
            assert resp.status == 404


def test_console_files_are_self_contained() -> None:
    """No inline script, nothing from another origin (no CDN, no web font), packaged."""
    names = sorted(p.name for p in STATIC_DIR.iterdir())
    assert {"index.html", "app.js", "style.css"} <= set(names)
    html = (STATIC_DIR / "index.html").read_text()
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'src="' in tag, tag  # inline scripts would break the CSP
    assert not re.search(r"\s(style|on[a-z]+)=", html)  # no inline style or handler either
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        urls = re.findall(r"https?://[^\s\"')]+", text)
        assert all(u.startswith("http://www.w3.org/2000/svg") for u in urls), (path.name, urls)
        assert "localStorage.setItem(KEY" not in text and "document.cookie" not in text
        assert "innerHTML" not in text, path.name  # text is set as text, never parsed
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"api/console_static/*"' in pyproject


# -- in Chromium -------------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as launched:
        yield launched


async def test_console_queues_peek_redrive_edit_purge_delete(
    browser: Any, start_node: StartNode, keys: dict[str, str], queues: Queues
) -> None:
    from playwright.async_api import expect

    node = await start_node(rate_sample_interval=1.0)
    assert node.http_url is not None
    await queues.create_queue("dead")
    await queues.create_queue("orders", max_receive_count=1, dead_letter_queue="dead")
    await queues.create_queue("audit")
    tab = await open_tab(browser)
    page = tab.page

    # A wrong key is refused, clearly, and nothing is stored.
    await page.goto(f"{node.http_url}/console")
    await page.get_by_label("API key").fill("wsmq_not-a-real-key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#login-error")).to_contain_text("refused")
    await expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    assert await page.evaluate("sessionStorage.length") == 0
    await tab.shot("login-refused")

    await sign_in(tab, node, keys["all"])
    assert await page.evaluate("sessionStorage.getItem('wsmq.console.key')") == keys["all"]
    assert "wsmq_" not in await page.evaluate("Object.values(localStorage).join()")
    assert await tab.context.cookies() == []
    await expect(page.locator("#who")).to_contain_text("all")
    await page.reload()  # the tab keeps its key: still signed in
    await expect(page.get_by_role("heading", name="Queues", level=1)).to_be_visible()

    # The table lists every queue; the DLQ badge names the dead-letter queue and its depth.
    orders = row(tab, "orders")
    await expect(orders.locator('[data-field="total"]')).to_have_text("0")
    await expect(orders.locator('[data-field="dlq"]')).to_have_text("dead · 0")
    await expect(row(tab, "dead").locator('[data-field="dlq"]')).to_have_text("is a DLQ")

    # A publish shows up on the next automatic refresh (every 5 s).
    markup = '<img src="x" onerror="window.pwned = 1"><b>not bold</b>'
    await queues.send_messages("orders", ["first", markup, "x" * 3000])
    await expect(orders.locator('[data-field="total"]')).to_have_text("3")
    await expect(orders.locator('[data-field="visible"]')).to_have_text("3")

    # Resuming after a pause refreshes at once (the pause itself: see the test with a clock).
    await page.get_by_role("button", name="Pause updates").click()
    await queues.send_message("audit", "audit entry")
    await page.get_by_role("button", name="Resume updates").click()
    await expect(row(tab, "audit").locator('[data-field="total"]')).to_have_text("1")
    await expect(page.get_by_role("button", name="Pause updates")).to_be_visible()

    # Sorting by total, descending first; aria-sort says so.
    await page.get_by_role("button", name="Total").click()
    await expect(page.locator('th[data-col="total"]')).to_have_attribute("aria-sort", "descending")
    first_row = page.locator("#queues-table tbody tr").first
    await expect(first_row).to_have_attribute("data-queue", "orders")
    await tab.shot("queues")

    # Create a queue from the form; the console opens it.
    await queues.create_queue("fresh-dead")
    await page.get_by_role("button", name="New queue").click()
    await page.get_by_label("Name", exact=True).fill("fresh")
    await page.get_by_label("Visibility timeout (s)").fill("12")
    await page.get_by_label("Max receive count").fill("4")
    await page.get_by_label("Dead-letter queue").fill("fresh-dead")
    await page.get_by_role("button", name="Create queue").click()
    await expect(page.get_by_role("heading", name="fresh", level=1)).to_be_visible()
    await expect(page.get_by_role("link", name="DLQ fresh-dead · 0")).to_be_visible()
    attrs = await queues.get_queue_attributes("fresh")
    assert (attrs.vt, attrs.max_receive_count, attrs.dead_letter_queue) == (12, 4, "fresh-dead")
    await expect(page).to_have_title("fresh · Queues · wsmq console")
    await page.get_by_role("link", name="Queues", exact=True).first.click()

    # One queue: peek shows bodies, the long one cut, and receives nothing.
    await orders.get_by_role("link", name="orders").click()
    await expect(page.get_by_role("heading", name="orders", level=1)).to_be_visible()
    await page.get_by_label("Show").select_option("25")
    await page.get_by_role("button", name="Peek messages").click()
    peeked = page.locator(".peek-table tbody tr")
    await expect(peeked).to_have_count(3)
    await expect(peeked.nth(0).locator(".body-cell")).to_have_text("first")
    await expect(peeked.nth(1).locator(".body-cell")).to_have_text(markup)  # text, not HTML
    await expect(peeked.nth(1).locator("img, b")).to_have_count(0)
    assert await page.evaluate("window.pwned") is None
    await expect(peeked.nth(2).locator(".body-cell")).to_contain_text("3,000 characters")
    assert (await queues.get_queue_attributes("orders")).totalrecv == 0  # peek receives nothing

    # Edit the attributes.
    await page.get_by_role("button", name="Edit attributes").click()
    await page.get_by_label("Visibility timeout (s)").fill("45")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#status")).to_contain_text("Attributes of orders saved")
    assert (await queues.get_queue_attributes("orders")).vt == 45

    # Dead-letter the three: received once (max receive count 1), then moved on the next.
    got = await queues.receive_messages("orders", 3, vt=0)
    assert len(got) == 3 and await queues.receive_messages("orders", 3) == []
    await page.get_by_role("link", name="DLQ dead · 3").click()  # after the next refresh
    await expect(page.get_by_role("heading", name="dead", level=1)).to_be_visible()
    await expect(page.locator('[data-field="dlq-depth"]')).to_have_text("3")
    await tab.shot("dlq")

    # Redrive one (confirmed), then all of the rest.
    await page.get_by_label("At most").check()
    await page.get_by_label("Number of messages to redrive").fill("1")
    await page.get_by_role("button", name="Redrive…").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Move up to 1 message(s) from dead back to orders?")
    await dialog.get_by_role("button", name="Redrive").click()
    await expect(page.locator("#status")).to_contain_text("Moved 1 message(s) from dead")
    assert (await queues.get_queue_attributes("dead")).msgs == 2
    assert (await queues.get_queue_attributes("orders")).msgs == 1
    await expect(page.locator('[data-field="dlq-depth"]')).to_have_text("2")
    await page.get_by_label("All").check()
    await page.get_by_role("button", name="Redrive…").click()
    await dialog.get_by_role("button", name="Cancel").click()  # cancelled: nothing moves
    assert (await queues.get_queue_attributes("dead")).msgs == 2
    await page.get_by_role("button", name="Redrive…").click()
    await expect(dialog).to_contain_text("Move all 2 message(s)")
    await dialog.get_by_role("button", name="Redrive").click()
    await expect(page.locator("#status")).to_contain_text("Moved 2 message(s)")
    assert (await queues.get_queue_attributes("dead")).msgs == 0
    assert (await queues.get_queue_attributes("orders")).msgs == 3

    # Purge "orders": the button stays disabled until the name is typed exactly.
    await page.goto(f"{node.http_url}/console/#/queues/orders")
    await expect(page.get_by_role("heading", name="orders", level=1)).to_be_visible()
    await expect(page.locator('[data-stat="total"] .stat-value')).to_have_text("3")
    await tab.shot("queue")
    await page.get_by_role("button", name="Purge messages…").click()
    purge = dialog.get_by_role("button", name="Purge")
    await expect(purge).to_be_disabled()
    await dialog.get_by_label("Type orders to confirm").fill("order")
    await expect(purge).to_be_disabled()
    await dialog.get_by_label("Type orders to confirm").fill("orders")
    await expect(purge).to_be_enabled()
    await tab.shot("purge-confirm", full_page=False)
    await purge.click()
    await expect(page.locator("#status")).to_contain_text("Purged 3 message(s) from orders")
    assert (await queues.get_queue_attributes("orders")).msgs == 0

    # Delete "audit" the same way; the console goes back to the list.
    await page.goto(f"{node.http_url}/console/#/queues/audit")
    await page.get_by_role("button", name="Delete queue…").click()
    await dialog.get_by_label("Type audit to confirm").fill("audit")
    await dialog.get_by_role("button", name="Delete queue").click()
    await expect(page.get_by_role("heading", name="Queues", level=1)).to_be_visible()
    await expect(row(tab, "audit")).to_have_count(0)
    assert not await queues.queue_exists("audit")

    # Signing out forgets the key.
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    tab.assert_clean(statuses=(401,))


async def test_console_refresh_every_5_s_and_pause(
    browser: Any, start_node: StartNode, keys: dict[str, str], queues: Queues
) -> None:
    """With the page's clock under the test's control: a refresh every 5 s, none while
    paused however long, and one at once on resume."""
    from playwright.async_api import expect

    node = await start_node()
    await queues.create_queue("jobs")
    tab = await open_tab(browser)
    page = tab.page
    await page.clock.install()
    await sign_in(tab, node, keys["reader"])
    total = row(tab, "jobs").locator('[data-field="total"]')
    await expect(total).to_have_text("0")

    await queues.send_message("jobs", "one")
    await page.clock.run_for(4_000)
    await expect(total).to_have_text("0")  # not yet: the next refresh is due at 5 s
    await page.clock.run_for(1_500)
    await expect(total).to_have_text("1")

    pause = page.get_by_role("button", name="Pause updates")
    await pause.click()
    resume = page.get_by_role("button", name="Resume updates")
    await expect(resume).to_have_attribute("data-paused", "true")
    await expect(page.locator("#status")).to_have_text("Automatic updates paused.")
    await queues.send_message("jobs", "two")
    fetched = len(tab.requests)
    await page.clock.run_for(60_000)  # a minute paused: nothing is fetched
    await page.evaluate("1")  # a round trip: a request made meanwhile would be seen by now
    assert tab.requests[fetched:] == []
    await expect(total).to_have_text("1")
    await resume.click()
    await expect(total).to_have_text("2")
    await expect(page.get_by_role("button", name="Pause updates")).to_have_attribute(
        "data-paused", "false"
    )

    # The node stops: the error shows, the last figures stay; back up on the same port, the
    # next refresh says so.
    assert node.http_url is not None
    port = int(node.http_url.rsplit(":", 1)[1])
    await node.close()
    await page.clock.run_for(5_500)
    await expect(page.locator("#status")).to_contain_text("The node does not answer")
    await expect(total).to_have_text("2")
    await start_node(port=port)
    await queues.send_message("jobs", "three")
    await page.clock.run_for(5_500)
    await expect(page.locator("#status")).to_have_text("Back in touch with the node.")
    await expect(total).to_have_text("3")
    tab.assert_clean(node_down=True)


async def test_console_nodes_and_revoking_a_user(
    browser: Any,
    start_node: StartNode,
    keys: dict[str, str],
    user_store: FileUserStore,
) -> None:
    from playwright.async_api import expect

    # Under a routes_prefix: the console finds its API at ../api/ from wherever it is served.
    node = await start_node(routes_prefix="/ops")
    other = await start_node(routes_prefix="/ops")
    (alice,) = await make_users(user_store, names=["alice"], secret=SECRET)
    tab = await open_tab(browser)
    page = tab.page
    async with aiohttp.ClientSession() as http:
        assert other.url is not None
        ws = await http.ws_connect(other.url, headers=alice.headers)

        await sign_in(tab, node, keys["all"], prefix="/ops")
        await page.get_by_role("link", name="Nodes").click()
        await expect(page.locator(".nodes-table tbody tr")).to_have_count(2)
        assert other.api is not None
        connected = page.locator(f'.nodes-table tr[data-node="{other.api.announcer.node_id}"]')
        await expect(connected.locator('[data-field="connections"]')).to_have_text("1")
        await tab.shot("nodes")

        await page.get_by_role("link", name="Users").click()
        await page.get_by_label("User id").fill("ffffffffffffffffffffffff")
        await page.get_by_role("button", name="Revoke sessions…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
        await expect(page.locator("#revoke-error")).to_have_text(
            "No user with id ffffffffffffffffffffffff."
        )
        await page.get_by_label("User id").fill(alice.user_id)
        await page.get_by_role("button", name="Revoke sessions…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
        async with asyncio.timeout(10):
            msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4403
        await expect(page.locator(".revocations li")).to_contain_text(alice.user_id)
        await tab.shot("users")
        await expect(page.locator("#status")).to_contain_text(f"Sessions of user {alice.user_id}")
    tab.assert_clean(statuses=(404,))


async def test_console_read_only_key_and_revoked_key(
    browser: Any,
    start_node: StartNode,
    keys: dict[str, str],
    user_store: FileUserStore,
    queues: Queues,
) -> None:
    from playwright.async_api import expect

    from wsmq.auth.apikeys import api_key_store

    node = await start_node()
    await queues.create_queue("jobs")
    tab = await open_tab(browser)
    page = tab.page

    # A key without "read" cannot use the console.
    await page.goto(f"{node.http_url}/console")
    await page.get_by_label("API key").fill(keys["publisher"])
    await page.get_by_label("API key").press("Enter")
    await expect(page.locator("#login-error")).to_contain_text("lacks the read scope")

    # A read-only key sees queues but no admin controls.
    await sign_in(tab, node, keys["reader"])
    # Keyboard focus is visible: a 3px outline on the focused control.
    await page.keyboard.press("Tab")
    outline = await page.evaluate(
        "[document.activeElement.matches(':focus-visible'),"
        " getComputedStyle(document.activeElement).outlineWidth]"
    )
    assert outline == [True, "3px"], outline
    # "Skip to content" moves the focus to the content and leaves the route alone.
    await page.get_by_role("link", name="Skip to content").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#main")).to_be_focused()
    assert await page.evaluate("location.hash") == "#/queues"
    await page.goto(f"{node.http_url}/console/#/queues/jobs")
    await expect(page.get_by_role("heading", name="jobs", level=1)).to_be_visible()
    await expect(page.get_by_role("button", name="Peek messages")).to_be_visible()
    await expect(page.get_by_role("button", name="Purge messages…")).to_have_count(0)
    await expect(page.get_by_role("button", name="Edit attributes")).to_have_count(0)

    # Revoking the key signs the console out on its next request (keys re-read every 2 s).
    await api_key_store(user_store).revoke("reader")
    await expect(page.locator("#login-error")).to_contain_text("no longer accepted")
    assert await page.evaluate("sessionStorage.length") == 0
    tab.assert_clean(statuses=(401,))


async def test_console_on_a_phone_and_in_dark_mode(
    browser: Any, start_node: StartNode, keys: dict[str, str], queues: Queues
) -> None:
    from playwright.async_api import expect

    node = await start_node(rate_sample_interval=1.0)
    await queues.create_queue("dead")
    await queues.create_queue("orders", max_receive_count=3, dead_letter_queue="dead")
    await queues.create_queue("emails")
    await queues.send_messages("orders", [f'{{"order": {i}}}' for i in range(12)])
    await queues.send_messages("emails", ["welcome", "reset"])
    await queues.send_messages("dead", ["poison"])
    await queues.groups.add("fanout", "emails", "orders")

    # A phone: no horizontal scrolling; the table turns into labelled cards.
    tab = await open_tab(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await sign_in(tab, node, keys["all"])
    page = tab.page
    await expect(row(tab, "orders").locator('[data-field="total"]')).to_have_text("12")
    await assert_contrast(tab)
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    await tab.shot("phone-queues")
    await row(tab, "orders").get_by_role("link", name="orders").click()
    await page.get_by_role("button", name="Peek messages").click()
    await expect(page.locator(".peek-table tbody tr")).to_have_count(10)
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await tab.shot("phone-queue")
    tab.assert_clean()

    # Dark mode from the system setting, and the toggle switches back and forth.
    dark = await open_tab(browser, color_scheme="dark")
    await sign_in(dark, node, keys["all"])
    page = dark.page
    html = page.locator("html")
    await expect(html).to_have_attribute("data-theme", "dark")
    background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(14, 17, 22)", background
    await expect(row(dark, "orders").locator('[data-field="total"]')).to_have_text("12")
    await expect(row(dark, "fanout").locator(".group-badge")).to_have_text("group · 2")
    await assert_contrast(dark)
    await dark.shot("dark-queues")
    await row(dark, "fanout").get_by_role("link", name="fanout").click()
    members = page.locator("dt", has_text="Group members").locator("xpath=following-sibling::dd[1]")
    await expect(members).to_have_text("emails, orders")
    await page.get_by_role("link", name="Queues", exact=True).first.click()
    await row(dark, "orders").get_by_role("link", name="orders").click()
    await expect(page.get_by_role("heading", name="orders", level=1)).to_be_visible()
    assert len(await queues.receive_messages("orders", 5, vt=600)) == 5  # in flight
    await queues.send_messages("orders", ["late 1", "late 2"])
    await expect(page.locator('[data-stat="hidden"] .stat-value')).to_have_text("5")
    await expect(page.locator(".chart-svg")).to_have_count(2)  # rates: two samples, 1 s apart
    await dark.shot("dark-queue")
    toggle = page.get_by_role("button", name="Dark mode")
    await expect(toggle).to_have_attribute("aria-pressed", "true")
    await toggle.click()
    await expect(html).to_have_attribute("data-theme", "light")
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await page.reload()  # the choice is remembered over the system's
    await expect(html).to_have_attribute("data-theme", "light")
    await toggle.click()
    await expect(html).to_have_attribute("data-theme", "dark")
    dark.assert_clean()


async def test_console_peek_of_a_huge_body_gives_its_size_in_bytes(
    browser: Any, start_node: StartNode, keys: dict[str, str], queues: Queues
) -> None:
    # Redis cuts huge bodies before sending them (GET .../messages: length null, size in
    # bytes): the console says "bytes", not "null characters".
    from playwright.async_api import expect

    node = await start_node()
    await queues.create_queue("big", maxsize=-1)
    await queues.send_message("big", "é" * 300_000)  # 600,000 bytes: beyond what a peek fetches
    tab = await open_tab(browser)
    page = tab.page
    await sign_in(tab, node, keys["reader"])
    await row(tab, "big").get_by_role("link", name="big").click()
    await expect(page.get_by_role("heading", name="big", level=1)).to_be_visible()
    await page.get_by_role("button", name="Peek messages").click()
    cell = page.locator(".peek-table tbody tr").first.locator(".body-cell")
    await expect(cell).to_contain_text("600,000 bytes in all")
    await expect(cell).not_to_contain_text("null")

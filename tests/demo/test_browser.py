"""The demo page in a real headless Chromium against a real two-node stack.

Logs in (keyboard only), subscribes, receives a message published with ``wsmq send`` in a
subprocess, acknowledges automatically and by hand, sends from the page, and keeps receiving
after the node it was connected to restarts. Saves ``artifacts/demo-page.png``. Also: errors
show next to their form and go away when resolved, a refused send keeps its text, logging out
leaves nothing of the user, own queues are labelled, and the page chats with
``examples/chat/chat.py``. Two device panes of one user (Laptop, Phone) each get every message,
catch up after being offline and ack independently; the tokens callback's ``UnauthorizedError``
ends every connection, other token failures are retried by the client.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.demo.chat_proc import chat_command, chat_process, finish
from tests.demo.helpers import ARTIFACTS, chromium_path, wsmq_send
from wsmq.demo import DemoStack
from wsmq.queue import QueueNotFound, Queues

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


@pytest.fixture
async def browser_page() -> AsyncIterator[tuple[Any, list[str], list[str]]]:
    """A Chromium page, its JavaScript errors and any request that left loopback."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no system Chromium: apt-get install chromium (scripts/test does it)")
    from playwright.async_api import Route, async_playwright

    errors: list[str] = []
    outside: list[str] = []

    async def only_loopback(route: Route) -> None:
        url = route.request.url
        if url.startswith(("http://127.0.0.1:", "http://localhost:")):
            await route.continue_()
        else:  # the page must work without internet
            outside.append(url)
            await route.abort()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 960})
            await context.route("**/*", only_loopback)
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: errors.append(msg.text) if msg.type == "error" else None,
            )
            yield page, errors, outside
        finally:
            await browser.close()


async def _queue_counts(stack: DemoStack, qname: str) -> tuple[int, int]:
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        attrs = await queues.get_queue_attributes(qname)
        return attrs.msgs, attrs.hiddenmsgs
    finally:
        await queues.close()


async def _publish(stack: DemoStack, qname: str, message: str) -> str:
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        return await queues.send_message(qname, message)
    finally:
        await queues.close()


async def _publish_paced(stack: DemoStack, qname: str, prefix: str, count: int) -> list[str]:
    """``count`` messages 50 ms apart (traffic spread over a node restart); their ids."""
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        ids = []
        for i in range(count):
            ids.append(await queues.send_message(qname, f"{prefix} {i}"))
            await asyncio.sleep(0.05)  # pacing the traffic, not waiting for anything
        return ids
    finally:
        await queues.close()


async def _restart_connected_node(page: Any, stack: DemoStack) -> str:
    """SIGTERM the node the page is connected to, start it again; the page must reconnect."""
    from playwright.async_api import expect

    before = str(await page.locator("#node-url").inner_text())
    await stack.restart_node(stack.node_urls.index(before))
    await expect(page.locator("#events")).to_contain_text(f"disconnected from {before} (1001")
    await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    return before


async def _wait_all_received_and_settled(page: Any, ids: list[str]) -> None:
    """Every id in ``ids`` has a row, and no row waits for its ack any more."""
    await page.wait_for_function(
        """ids => ids.every((id) => document.querySelector(`#log li.msg[data-id="${id}"]`))
             && !document.querySelector('#log li.msg[data-acked="false"]')""",
        arg=ids,
        timeout=TIMEOUT_MS,
    )


async def _wait_queue_empty(stack: DemoStack, qname: str) -> None:
    """Polls Redis (bounded): a message released by a stopping node may still be on its way
    back to the page, whose ack then empties the queue."""
    async with asyncio.timeout(TIMEOUT_MS / 1000):
        while await _queue_counts(stack, qname) != (0, 0):
            await asyncio.sleep(0.1)


async def _open(page: Any, stack: DemoStack) -> None:
    """Load the page and wait until it has read the stack's config.json."""
    from playwright.async_api import expect

    await page.goto(stack.page_url)
    await expect(page.get_by_text("Demo users: alice, bob")).to_be_visible()


async def test_page_login_subscribe_receive_ack_send_and_failover(
    stack: DemoStack, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    from playwright.async_api import expect

    page, errors, outside = browser_page
    alice, bob = stack.users
    await _open(page, stack)

    # Log in with the keyboard only: labels name the fields, Enter submits.
    await page.get_by_label("User name").focus()
    await page.keyboard.type(alice.name)
    await page.keyboard.press("Tab")
    await page.keyboard.type(alice.password)
    await page.keyboard.press("Enter")
    state = page.locator("#state")
    await expect(state).to_have_attribute("data-state", "connected")
    await expect(page.locator("#user-id")).to_have_text(alice.id)

    # Subscribe to alice's own queue (prefilled with her id) and the shared one.
    await expect(page.get_by_label("Queue name")).to_have_value(alice.id)
    await page.get_by_role("button", name="Subscribe", exact=True).click()
    await page.get_by_label("Queue name").fill("chat")
    await page.get_by_label("Queue name").press("Enter")
    for qname in (alice.id, "chat"):
        chip = page.locator(f'#subscriptions li[data-queue="{qname}"]')
        await expect(chip).to_have_attribute("data-status", "active")

    # 1. A message from `wsmq send` (subprocess) shows up and is acknowledged automatically.
    first_id = wsmq_send(stack, alice.id, "hello alice from wsmq send")
    row = page.locator(f'#log li.msg[data-id="{first_id}"]')
    await expect(row.locator(".body")).to_have_text("hello alice from wsmq send")
    await expect(row).to_have_attribute("data-rc", "1")
    await expect(row).to_have_attribute("data-acked", "true")
    assert await _queue_counts(stack, alice.id) == (0, 0)  # deleted on ack

    # Bob's queue is not alice's to read: an error frame, the connection stays.
    await page.get_by_label("Queue name").fill(bob.id)
    await page.get_by_label("Queue name").press("Enter")
    await expect(page.locator("#events")).to_contain_text(f"forbidden on bob's inbox ({bob.id})")
    await expect(page.locator(f'#subscriptions li[data-queue="{bob.id}"]')).to_have_count(0)
    await expect(state).to_have_attribute("data-state", "connected")

    # 2. Manual acknowledgement: the message stays in flight until the Ack button.
    await page.get_by_label("Acknowledge messages automatically").uncheck()
    second_id = wsmq_send(stack, alice.id, '{"json": "stays raw"}')
    row = page.locator(f'#log li.msg[data-id="{second_id}"]')
    await expect(row.locator(".body")).to_have_text('{"json": "stays raw"}')
    assert await _queue_counts(stack, alice.id) == (1, 1)  # delivered, hidden, not deleted
    await row.get_by_role("button", name=f"Acknowledge message {second_id}").click()
    await expect(row).to_have_attribute("data-acked", "true")
    assert await _queue_counts(stack, alice.id) == (0, 0)
    await page.get_by_label("Acknowledge messages automatically").check()

    # 3. Send from the page to bob's queue (prefilled): it lands in Redis.
    await expect(page.get_by_label("To queue")).to_have_value(bob.id)
    await page.get_by_label("Message", exact=True).fill("hi bob, from the page")
    await page.get_by_label("Message", exact=True).press("Enter")
    await expect(page.locator("#events")).to_contain_text(f"sent to bob's inbox ({bob.id})")
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        got = await queues.receive_message(bob.id)
    finally:
        await queues.close()
    assert got is not None  # in the chat format examples/chat/chat.py reads
    assert json.loads(got.message) == {"from": "alice", "text": "hi bob, from the page"}

    # 4. Failover, twice: the node the page is connected to stops (SIGTERM: it releases the
    # messages in flight and closes with 1001) and comes back; wsmq-client moves to the other
    # node at once and renews both subscriptions.
    # a) A message held unacknowledged across the restart comes again and can be acked there.
    await page.get_by_label("Acknowledge messages automatically").uncheck()
    held_id = await _publish(stack, alice.id, "held across a restart")
    rows = page.locator(f'#log li.msg[data-id="{held_id}"]')
    await expect(rows).to_have_count(1)
    assert await _queue_counts(stack, alice.id) == (1, 1)
    before = await _restart_connected_node(page, stack)
    first = page.locator(f'#log li.msg[data-id="{held_id}"][data-rc="1"]')
    await expect(first).to_have_attribute("data-acked", "released")  # its connection closed
    again = page.locator(f'#log li.msg[data-id="{held_id}"][data-rc="2"]')
    await expect(again.locator(".rc")).to_have_text("delivery 2 (redelivered)")
    assert await page.locator("#node-url").inner_text() not in ("", before)
    await again.get_by_role("button", name=f"Acknowledge message {held_id}").click()
    await expect(again).to_have_attribute("data-acked", "true")
    assert await _queue_counts(stack, alice.id) == (0, 0)
    await page.get_by_label("Acknowledge messages automatically").check()

    # b) Messages published before, during and after a restart: none is lost, all are acked.
    ids = [await _publish(stack, "chat", f"before {i}") for i in range(10)]
    await _wait_all_received_and_settled(page, ids)
    publishing = asyncio.create_task(_publish_paced(stack, "chat", "during", 20))
    await _restart_connected_node(page, stack)
    ids += await publishing
    ids += [await _publish(stack, "chat", f"after {i}") for i in range(10)]
    assert len(set(ids)) == 40
    await _wait_all_received_and_settled(page, ids)  # every message reached the page
    await _wait_queue_empty(stack, "chat")  # and every one was acknowledged
    acked = await page.eval_on_selector_all(
        '#log li.msg[data-acked="true"]', "rows => rows.map((row) => row.dataset.id)"
    )
    calm = ids[:10] + ids[30:]  # published away from the restart: acked at the first try
    assert set(calm) <= set(acked)
    for qname in (alice.id, "chat"):
        chip = page.locator(f'#subscriptions li[data-queue="{qname}"]')
        await expect(chip).to_have_attribute("data-status", "active")

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)

    await page.get_by_role("button", name="Unsubscribe from chat").click()
    await expect(page.locator("#events")).to_contain_text("unsubscribed from chat")
    await expect(page.locator('#subscriptions li[data-queue="chat"]')).to_have_count(0)
    assert errors == []
    assert outside == []


async def test_page_refreshes_its_token_then_handles_revocation(
    tmp_path: Path, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    """With 6 s tokens the page must refresh (HTTP /auth/token, then /refresh) to stay open:
    its own connection and both device panes, through one failed /auth/token (503: retried by
    the client). A refused access token (401) ends them all: back to the login form."""
    from playwright.async_api import Route, expect

    page, errors, outside = browser_page
    token_calls: list[int] = []

    async def first_token_call_fails(route: Route) -> None:
        token_calls.append(len(token_calls) + 1)
        if len(token_calls) == 1:  # e.g. every node busy: the client must call again
            await route.fulfill(status=503, json={"error": "unavailable", "message": "busy"})
        else:
            await route.continue_()

    await page.route("**/auth/token", first_token_call_fails)
    async with DemoStack(port=0, log_to=tmp_path, token_ttl=6) as stack:
        alice = stack.users[0]
        await _open(page, stack)
        await page.get_by_label("User name").fill(alice.name)
        await page.get_by_label("Password").fill(alice.password)
        await page.get_by_role("button", name="Log in and connect").click()
        await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
        first_exp = await page.evaluate("window.wsmqDemo.session.expiresAt")
        await page.get_by_role("button", name="Subscribe", exact=True).click()
        chip = page.locator(f'#subscriptions li[data-queue="{alice.id}"]')
        await expect(chip).to_have_attribute("data-status", "active")
        await page.get_by_role("button", name="Open Laptop and Phone").click()
        pane_states = page.locator(".pane-state")
        for i in range(2):
            await expect(pane_states.nth(i)).to_have_attribute("data-state", "connected")

        # Past the first token's expiry (the node closes at exp with 4403): still connected.
        # (Waiting for wall-clock time to pass, not synchronising: the deadline is the point.)
        await asyncio.sleep(max(0.0, (first_exp + 1500) / 1000 - time.time()))
        events = page.locator("#events")
        await expect(events).to_contain_text("fresh token sent on the open connection")
        await expect(events).to_contain_text("token refresh failed: busy; the client tries again")
        for name in ("Laptop", "Phone"):
            await expect(events).to_contain_text(f"{name}: fresh token sent on the open connection")
        await expect(events).not_to_contain_text("disconnected")
        await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
        for i in range(2):
            await expect(pane_states.nth(i)).to_have_attribute("data-state", "connected")
        assert await page.evaluate("window.wsmqDemo.session.expiresAt") > first_exp
        msg_id = wsmq_send(stack, alice.id, "after the refresh")
        # alice's inbox has devices now: the panes get it, and so does the plain subscription
        # (the plain subscribers share one more copy, docs/delivery.md, Devices).
        for pane in ("#pane-laptop", "#pane-phone"):
            row = page.locator(f'{pane} .pane-log li.msg[data-id="{msg_id}"]')
            await expect(row).to_have_attribute("data-acked", "true")
        plain_row = page.locator(f'#log li.msg[data-id="{msg_id}"]')
        await expect(plain_row).to_have_attribute("data-acked", "true")
        await expect(page.locator("#log li.msg")).to_have_count(1)

        # Revoked elsewhere (a new login, then logout, from another client): every socket of
        # alice's is closed with 4403, the page's access token no longer works, so it goes
        # back to the login form instead of reconnecting in a loop.
        async with aiohttp.ClientSession() as http:
            body = {"userName": alice.name, "password": alice.password}
            async with http.post(stack.node_http_urls[1] + "/auth/login", json=body) as resp:
                access = (await resp.json())["accessToken"]
            headers = {"x-access-token": access}
            body = {"userName": alice.name}
            async with http.post(
                stack.node_http_urls[1] + "/auth/logout", json=body, headers=headers
            ) as resp:
                assert resp.status == 200
        await expect(page.locator("#state")).to_have_attribute("data-state", "offline")
        await expect(page.locator("#state")).to_contain_text("access revoked")
        await expect(page.get_by_role("button", name="Log in and connect")).to_be_visible()
        for i in range(2):
            await expect(pane_states.nth(i)).to_have_attribute("data-state", "offline")
        # UnauthorizedError ended every client: no more /auth/token calls.
        calls = len(token_calls)
        await expect(events).to_contain_text("access revoked")
        assert len(token_calls) == calls
        # Only the 503 and the refused /auth/token (Chromium logs every HTTP error); no
        # JavaScript error.
        assert sum("status of 503" in e for e in errors) == 1, errors
        assert all("status of 401" in e or "status of 503" in e for e in errors), errors
        assert outside == []


async def test_page_served_by_a_node_itself(
    tmp_path: Path,
    redis_url: str,
    aiohttp_server: Any,
    browser_page: tuple[Any, list[str], list[str]],
) -> None:
    """`add_page_routes` on the app `wsmq.serve(app=...)` mounts on: same origin, no relay."""
    from aiohttp import web
    from playwright.async_api import expect

    from wsmq import serve
    from wsmq.demo import create_demo_users
    from wsmq.demo.page import add_page_routes

    page, errors, outside = browser_page
    users = await create_demo_users(tmp_path / "users.json")
    bob = users[1]
    app = web.Application()
    add_page_routes(app, prefix="/page/")
    gateway = await serve(
        app, redis_url=redis_url, users_file=str(tmp_path / "users.json"), secret="s" * 32
    )
    server = await aiohttp_server(app)
    try:
        await page.goto(str(server.make_url("/page/")))
        await page.get_by_label("User name").fill(bob.name)
        await page.get_by_label("Password").fill(bob.password)
        await page.get_by_label("Password").press("Enter")
        await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#node-url")).to_have_text(
            str(server.make_url("/")).replace("http", "ws", 1)
        )
        await page.get_by_role("button", name="Subscribe", exact=True).click()
        chip = page.locator(f'#subscriptions li[data-queue="{bob.id}"]')
        await expect(chip).to_have_attribute("data-status", "active")
        queues = Queues.from_url(redis_url)
        try:
            msg_id = await queues.send_message(bob.id, "served by the node")
        finally:
            await queues.close()
        row = page.locator(f'#log li.msg[data-id="{msg_id}"]')
        await expect(row).to_have_attribute("data-acked", "true")
        assert errors == []
        assert outside == []
    finally:
        await page.close()
        await gateway.close()


async def _log_in(page: Any, name: str, password: str) -> None:
    await page.get_by_label("User name").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Password").press("Enter")


async def test_page_errors_inline_refused_send_kept_logout_clears_and_labels(
    stack: DemoStack, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    from playwright.async_api import expect

    page, errors, outside = browser_page
    alice, bob = stack.users
    await _open(page, stack)
    state = page.locator("#state")

    # A failed login says so next to the form; the next, successful one clears it.
    await _log_in(page, alice.name, "wrong-" + alice.password)
    login_error = page.locator("#login-error")
    await expect(page.locator("#login-form").get_by_role("alert")).to_contain_text("Login failed")
    await expect(login_error).to_be_visible()
    await _log_in(page, alice.name, alice.password)
    await expect(state).to_have_attribute("data-state", "connected")
    await expect(login_error).to_be_hidden()
    await expect(login_error).to_have_text("")
    await expect(page.locator("#login-panel")).not_to_contain_text("failed", ignore_case=True)

    # Own queue and the other user's are labelled, not bare hex ids.
    await expect(page.get_by_label("Queue name")).to_have_value(alice.id)
    await expect(page.locator("#subscribe-queue-label")).to_have_text("your inbox")
    await expect(page.locator("#send-queue-label")).to_have_text("bob's inbox")
    await page.get_by_role("button", name="Subscribe", exact=True).click()
    chip = page.locator(f'#subscriptions li[data-queue="{alice.id}"]')
    await expect(chip).to_have_attribute("data-status", "active")
    await expect(chip.locator(".chip-name")).to_have_text("your inbox")
    await expect(chip.locator(".chip-name")).to_have_attribute("title", alice.id)
    await expect(page.get_by_role("button", name="Unsubscribe from your inbox")).to_be_visible()
    msg_id = wsmq_send(stack, alice.id, "labelled")
    row = page.locator(f'#log li.msg[data-id="{msg_id}"]')
    await expect(row.locator(".queue")).to_have_text("your inbox")

    # A refused subscribe is said next to the subscribe form.
    await page.get_by_label("Queue name").fill(bob.id)
    await page.get_by_label("Queue name").press("Enter")
    subscribe_error = page.locator("#subscribe-form").get_by_role("alert")
    await expect(subscribe_error).to_have_text(
        "Not subscribed to bob's inbox: you may not use this queue"
    )

    # A refused send keeps the text and says why next to the form (and in the events list).
    box = page.get_by_label("Message", exact=True)
    await page.get_by_label("To queue").fill("not-alices-to-write")
    await box.fill("keep me")
    await box.press("Enter")
    send_error = page.locator("#send-form").get_by_role("alert")
    await expect(send_error).to_contain_text(
        "Not sent to not-alices-to-write: you may not use this queue"
    )
    await expect(send_error).to_be_visible()
    await expect(page.locator("#events")).to_contain_text("forbidden on not-alices-to-write:")
    await expect(box).to_have_value("keep me")
    # Sent for real: only the node's "sent" empties the box, and the error goes away.
    await page.get_by_label("To queue").fill(bob.id)
    await box.press("Enter")
    await expect(page.locator("#events")).to_contain_text(f"sent to bob's inbox ({bob.id})")
    await expect(box).to_have_value("")
    await expect(page.locator("#send-error")).to_be_hidden()

    # Log out: nothing of alice is left on the page.
    await page.get_by_role("button", name="Log out").click()
    await expect(state).to_have_attribute("data-state", "offline")
    await expect(page.get_by_role("button", name="Log in and connect")).to_be_visible()
    await expect(page.locator("#whoami")).to_be_hidden()
    for field in ("#user-id", "#node-url", "#user-name-shown"):
        await expect(page.locator(field)).to_have_text("\N{EN DASH}")
    await expect(page.locator("#subscriptions li")).to_have_text(["None yet."])
    await expect(page.locator("#log li")).to_have_count(0)
    await expect(page.locator("#events li")).to_have_count(1)
    await expect(page.locator("#events")).to_contain_text("logged out")
    for label in ("User name", "Password", "Queue name", "To queue"):
        await expect(page.get_by_label(label)).to_have_value("")
    await expect(box).to_have_value("")
    await expect(page.locator(".form-error")).to_have_text(["", "", ""])
    await expect(page.locator("#subscribe-queue-label")).to_have_text("")
    session = await page.evaluate("window.wsmqDemo.session")
    for key in ("userId", "userName", "token", "accessToken", "device"):
        assert session[key] is None, key
    assert [e for e in errors if "status of 401" not in e] == []  # the refused login only
    assert outside == []


async def test_page_and_chat_py_talk_to_each_other(
    stack: DemoStack, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    """Alice on the page (node 1), bob in examples/chat/chat.py (node 2): each reads the other."""
    from playwright.async_api import expect

    page, errors, outside = browser_page
    alice, bob = stack.users
    cmd = chat_command(stack, 1, [stack.node_urls[1]], alice.id)
    async with chat_process(*cmd, "--count", "1", stdin=b"hello alice, from chat.py\n") as chat:
        await _open(page, stack)
        await _log_in(page, alice.name, alice.password)
        await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
        await page.get_by_role("button", name="Subscribe", exact=True).click()
        row = page.locator('#log li.msg[data-from="bob"]')
        await expect(row.locator(".from")).to_have_text("bob")
        await expect(row.locator(".body")).to_have_text("hello alice, from chat.py")
        await expect(row).to_have_attribute("data-acked", "true")

        await expect(page.get_by_label("To queue")).to_have_value(bob.id)
        await page.get_by_label("Message", exact=True).fill("hi bob, from the page")
        await page.get_by_label("Message", exact=True).press("Enter")
        code, out, err = await finish(chat)
    assert code == 0, err
    assert out == "alice: hi bob, from the page\n"

    assert errors == []
    assert outside == []


async def _wait_counts(stack: DemoStack, qname: str, counts: tuple[int, int]) -> None:
    """Polls Redis (bounded) until ``qname`` (a queue or an inbox ``q@d``) holds ``counts``
    (messages, of which hidden): an ack's deletion may land just after the page shows it."""
    async with asyncio.timeout(TIMEOUT_MS / 1000):
        while await _queue_counts(stack, qname) != counts:
            await asyncio.sleep(0.1)


async def test_page_two_devices_each_get_every_message_and_catch_up(
    stack: DemoStack, browser_page: tuple[Any, list[str], list[str]]
) -> None:
    """Laptop and Phone panes: two connections of alice, each subscribed as a device to her
    inbox and ``chat``. Both get every message; an offline pane catches up when it comes back;
    an ack in one pane leaves the other's copy alone; Redis ends empty."""
    from playwright.async_api import expect

    from wsmq.protocol.names import inbox_name

    page, errors, outside = browser_page
    alice, _bob = stack.users
    await _open(page, stack)
    await _log_in(page, alice.name, alice.password)
    await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    await page.get_by_role("button", name="Open Laptop and Phone").click()
    laptop, phone = page.locator("#pane-laptop"), page.locator("#pane-phone")
    panes = (laptop, phone)
    for pane in panes:
        await expect(pane.locator(".pane-state")).to_have_attribute("data-state", "connected")
        for qname in (alice.id, "chat"):
            chip = pane.locator(f'.pane-subs li[data-queue="{qname}"]')
            await expect(chip).to_have_attribute("data-status", "active")
    devices = [str(await pane.get_attribute("data-device")) for pane in panes]
    assert devices[0].startswith("laptop-") and devices[1].startswith("phone-")
    for pane, device in zip(panes, devices, strict=True):
        await expect(pane.locator(".pane-device-id")).to_have_text(device)
    await expect(page.locator("#events")).to_contain_text(
        f"Phone: subscribed to chat as device {devices[1]}"
    )

    async def send_from_page(text: str) -> None:
        await page.get_by_label("To queue").fill("chat")
        await page.get_by_label("Message", exact=True).fill(text)
        await page.get_by_label("Message", exact=True).press("Enter")
        await expect(page.get_by_label("Message", exact=True)).to_have_value("")

    async def rows_of(pane: Any) -> list[tuple[str, str]]:
        """Message rows of a pane, sorted: (body, acked state)."""
        pairs = await pane.locator(".pane-log li.msg").evaluate_all(
            "rows => rows.map((r) => [r.querySelector('.body').textContent, r.dataset.acked])"
        )
        return sorted((str(body), str(acked)) for body, acked in pairs)

    async def wait_acked(pane: Any, texts: list[str]) -> None:
        for text in texts:
            row = pane.locator(".pane-log li.msg", has=page.locator(".body", has_text=text))
            await expect(row).to_have_attribute("data-acked", "true")

    # 1. Both panes get every message: from the publisher (alice's inbox) and the page (chat).
    wsmq_send(stack, alice.id, "from wsmq send")
    await send_from_page("from the page")
    for pane in panes:
        await wait_acked(pane, ["from wsmq send", "from the page"])

    # 2. Phone goes offline; what is sent meanwhile reaches Laptop and waits in Phone's inboxes.
    await page.get_by_role("button", name="Go offline: Phone").click()
    await expect(phone.locator(".pane-state")).to_have_attribute("data-state", "offline")
    await expect(page.get_by_role("button", name="Come back: Phone")).to_be_visible()
    away = [f"while away {i}" for i in range(3)]
    for text in away:
        await _publish(stack, alice.id, text)
    await send_from_page("chat while away")
    await wait_acked(laptop, [*away, "chat while away"])
    await _wait_counts(stack, inbox_name(alice.id, devices[1]), (3, 0))
    await _wait_counts(stack, inbox_name("chat", devices[1]), (1, 0))
    assert not {*away, "chat while away"} & {body for body, _ in await rows_of(phone)}

    # 3. Phone comes back (same device id) and catches up on the backlog.
    await page.get_by_role("button", name="Come back: Phone").click()
    await expect(phone.locator(".pane-state")).to_have_attribute("data-state", "connected")
    await expect(phone).to_have_attribute("data-device", devices[1])
    await wait_acked(phone, [*away, "chat while away"])

    # 4. Acks are per device: Phone holds its copy unacknowledged while Laptop acks its own.
    await phone.get_by_label("Phone acknowledges automatically").uncheck()
    msg_id = await _publish(stack, alice.id, "ack me on each device")
    await wait_acked(laptop, ["ack me on each device"])
    held = phone.locator(f'.pane-log li.msg[data-id="{msg_id}"]')
    await expect(held).to_have_attribute("data-acked", "false")
    await _wait_counts(stack, inbox_name(alice.id, devices[0]), (0, 0))
    await _wait_counts(stack, inbox_name(alice.id, devices[1]), (1, 1))  # delivered, not acked
    await held.get_by_role("button", name=f"Acknowledge message {msg_id}").click()
    await expect(held).to_have_attribute("data-acked", "true")
    await phone.get_by_label("Phone acknowledges automatically").check()

    # Every pane shows every message exactly once, all acknowledged; Redis is empty.
    everything = {"from wsmq send", "from the page", *away, "chat while away"}
    everything.add("ack me on each device")
    for pane in panes:
        assert await rows_of(pane) == sorted((body, "true") for body in everything)
    await expect(page.locator("#log li.msg")).to_have_count(0)  # no plain subscription here
    for qname in (alice.id, "chat"):
        await _wait_counts(stack, qname, (0, 0))
        for device in devices:
            await _wait_counts(stack, inbox_name(qname, device), (0, 0))

    ARTIFACTS.mkdir(exist_ok=True)
    await page.locator("#devices-panel").screenshot(path=str(ARTIFACTS / "demo-devices.png"))

    # 5. Log out: both devices are offline, nobody copies, the messages wait in the queue. Log
    # in again: the panes reopen with the same device ids (localStorage) and both catch up.
    await page.get_by_role("button", name="Log out").click()
    await expect(page.locator("#state")).to_have_attribute("data-state", "offline")
    for pane in panes:
        await expect(pane.locator(".pane-log li")).to_have_count(0)
    for text in ("while logged out 1", "while logged out 2"):
        await _publish(stack, alice.id, text)
    assert await _queue_counts(stack, alice.id) == (2, 0)
    await _log_in(page, alice.name, alice.password)
    await expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    await page.get_by_role("button", name="Open Laptop and Phone").click()
    for pane, device in zip(panes, devices, strict=True):
        await expect(pane).to_have_attribute("data-device", device)
        await wait_acked(pane, ["while logged out 1", "while logged out 2"])

    # 6. Remove both: the devices leave, their inboxes go. A plain subscription (section 2)
    # first gets what the plain subscribers' shared inbox kept since the first device
    # registered (no plain subscriber was connected), then the inbox is a plain queue again.
    await page.get_by_role("button", name="Remove both").click()
    await expect(page.locator("#devices-status")).to_have_text(
        "Both devices removed, with their inboxes."
    )
    for pane in panes:
        await expect(pane.locator(".pane-state")).to_have_attribute("data-state", "offline")
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        for qname in (alice.id, "chat"):
            for device in devices:
                with pytest.raises(QueueNotFound):
                    await queues.get_queue_attributes(inbox_name(qname, device))
    finally:
        await queues.close()
    await expect(page.get_by_role("button", name="Open Laptop and Phone")).to_be_visible()
    await page.get_by_role("button", name="Subscribe", exact=True).click()
    plain_id = wsmq_send(stack, alice.id, "plain again")
    await expect(page.locator(f'#log li.msg[data-id="{plain_id}"]')).to_have_attribute(
        "data-acked", "true"
    )
    # Every message alice's inbox got since the devices registered, each once, then this one.
    kept = ["from wsmq send", *away, "ack me on each device"]
    kept += ["while logged out 1", "while logged out 2", "plain again"]
    await expect(page.locator("#log li.msg")).to_have_count(len(kept))
    for text in kept:
        row = page.locator("#log li.msg", has=page.locator(".body", has_text=text))
        await expect(row).to_have_attribute("data-acked", "true")
    queues = Queues.from_url(stack.queue_redis_url)
    try:  # drained: the shared inbox is gone (external state: a bounded poll)
        async with asyncio.timeout(10):
            while await queues.redis.exists(queues.keys.devices(alice.id)):
                await asyncio.sleep(0.05)
    finally:
        await queues.close()
    assert errors == []
    assert outside == []

"""Driving the operator console in headless Chromium: a tab that records JavaScript errors,
CSP violations and requests leaving loopback; signing in; screenshots; WCAG contrast."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.demo.helpers import ARTIFACTS, chromium_path
from wsmq.gateway import Gateway

SHOTS = ARTIFACTS / "console"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
DESKTOP = {"width": 1360, "height": 900}
PHONE = {"width": 390, "height": 844}


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Headless system Chromium (skips the test when it or Playwright is missing)."""
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no system Chromium: apt-get install chromium (scripts/test does it)")
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)  # covers a 5 s refresh with room to spare
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            expect.set_options(timeout=None)  # back to Playwright's default for other tests
            await browser.close()


class Tab:
    """A page in its own browser context, with its JavaScript errors (CSP violations are
    console errors) and any request that left loopback."""

    def __init__(self, page: Any, context: Any) -> None:
        self.page = page
        self.context = context
        self.errors: list[str] = []
        self.outside: list[str] = []
        #: Every request the page made, in order.
        self.requests: list[str] = []

    async def shot(self, name: str, *, full_page: bool = True) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    def assert_clean(self, *, statuses: tuple[int, ...] = (), node_down: bool = False) -> None:
        """No errors but the browser's own log lines for answers with ``statuses`` (a refused
        key: 401; an unknown user: 404) and, with ``node_down``, for requests to a stopped
        node, which the test provoked."""
        expected = tuple(f"status of {status} " for status in statuses)
        if node_down:
            expected += ("net::ERR_",)
        unexpected = [
            e
            for e in self.errors
            if not (e.startswith("Failed to load resource") and any(x in e for x in expected))
        ]
        assert unexpected == [], self.errors
        assert self.outside == [], self.outside


async def open_tab(browser: Any, **options: Any) -> Tab:
    from playwright.async_api import Route

    context = await browser.new_context(**{"viewport": DESKTOP, **options})
    page = await context.new_page()
    tab = Tab(page, context)

    async def only_loopback(route: Route) -> None:
        tab.requests.append(route.request.url)
        if route.request.url.startswith("http://127.0.0.1:"):
            await route.continue_()
        else:  # the console must work without internet
            tab.outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_loopback)
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    page.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    return tab


async def sign_in(tab: Tab, node: Gateway, key: str, prefix: str = "") -> None:
    """Open the console (under ``prefix``) and sign in with the keyboard only."""
    from playwright.async_api import expect

    page = tab.page
    await page.goto(f"{node.http_url}{prefix}/console")
    key_field = page.get_by_label("API key")
    await expect(key_field).to_be_focused()
    await page.keyboard.type(key)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Queues", level=1)).to_be_visible()


#: The WCAG contrast ratio of each element's text against its (first opaque) background.
CONTRAST_JS = """
(selectors) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      const parts = rgb(c);
      if (parts.length === 3 || parts[3] > 0.9) return parts.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = {};
  for (const sel of selectors) {
    const el = document.querySelector(sel);
    if (!el) { out[sel] = null; continue; }
    const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(background(el));
    out[sel] = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  }
  return out;
}
"""
CONTRAST_SELECTORS = [
    "h1",
    ".stat-label",
    ".stat-sub",
    "#queues-table thead th",
    "#queues-table tbody th a",
    "#queues-table td.num",
    ".badge-warn",
    ".badge-info",
    ".btn-primary",
    "#nav a[aria-current=page]",
    "#updated",
]


async def assert_contrast(tab: Tab) -> None:
    """Normal text needs 4.5:1 (WCAG AA)."""
    ratios = await tab.page.evaluate(CONTRAST_JS, CONTRAST_SELECTORS)
    low = {sel: ratio for sel, ratio in ratios.items() if ratio is None or ratio < 4.5}
    assert low == {}, ratios


def row(tab: Tab, qname: str) -> Any:
    return tab.page.locator(f'#queues-table tr[data-queue="{qname}"]')

"""Fixtures for the demo, page and examples tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wsmq.demo import DemoStack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[DemoStack]:
    """A whole demo: private Redis, two ``wsmq serve`` subprocesses, demo users, the page."""
    demo = DemoStack(port=0, log_to=tmp_path)
    await demo.start()
    try:
        yield demo
    finally:
        await demo.stop()

"""``serve()`` applies the ``fast_paths`` setting process-wide and logs the fast paths in use."""

from __future__ import annotations

import logging

import pytest

from tests.e2e.conftest import StartNode
from wsmq import _compat


def fast_path_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "fast_paths"]


async def test_a_node_logs_one_line_naming_the_fast_paths_in_use(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await start_node()
    assert fast_path_lines(caplog) == [f"fast paths: {', '.join(_compat.enabled()) or 'none'}"]


async def test_the_setting_off_leaves_only_the_guards(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    speed = {p.name for p in _compat.fast_paths() if p.speed}
    try:
        await start_node(fast_paths=False)
        assert not _compat.allowed()
        (line,) = fast_path_lines(caplog)
        assert not speed & set(line.removeprefix("fast paths: ").split(", "))
    finally:
        _compat.set_fast_paths(True)

"""The JavaScript client's own tests (``node --test clients/js/test/*.test.js``: scripted ``ws``
nodes, every close code, auth, refresh, acks, dedupe) run from pytest, so scripts/test covers
them. Skipped when Node.js or the pinned npm packages (``ws``) are missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
TESTS = sorted((ROOT / "clients" / "js" / "test").glob("*.test.js"))


def _global_websocket_flag() -> list[str]:
    """``--experimental-websocket`` where this Node has the flag (20.10+): the suite then also
    runs the client on Node's own (browser-like, headerless) WebSocket."""
    probe = subprocess.run(
        ["node", "--experimental-websocket", "-e", "0"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return ["--experimental-websocket"] if probe.returncode == 0 else []


def test_js_client_node_test_suite(node_modules: Path) -> None:
    assert TESTS, "no clients/js/test/*.test.js found"
    result = subprocess.run(
        ["node", *_global_websocket_flag(), "--test", *map(str, TESTS)],
        cwd=ROOT / "clients" / "js",
        env={**os.environ, "WSMQ_NODE_MODULES": str(node_modules)},
        capture_output=True,
        text=True,
        timeout=180,  # the suite takes seconds; a hang fails here instead of blocking the run
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20000:]
    assert "# fail 0" in report, report[-20000:]

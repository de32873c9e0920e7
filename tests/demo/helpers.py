"""Helpers for the demo, page and examples tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from wsmq.demo import DemoStack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
EXAMPLES = ROOT / "examples"
WSMQ = str(Path(sys.executable).with_name("wsmq"))


def wsmq_send(stack: DemoStack, qname: str, message: str) -> str:
    """Publish with the real CLI in a subprocess (what a user pastes); returns the id."""
    out = subprocess.run(
        [WSMQ, "send", qname, message, "--redis-url", stack.queue_redis_url, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return str(json.loads(out.stdout)["id"])


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def chromium_path() -> str | None:
    """The system Chromium (never a Playwright download)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None

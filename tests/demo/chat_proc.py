"""``examples/chat/chat.py`` as a subprocess, for the chat and page tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.demo.helpers import EXAMPLES
from wsmq.demo import DemoStack

TIMEOUT = 30.0


def chat_command(stack: DemoStack, user_index: int, urls: list[str], peer: str) -> list[str]:
    user = stack.users[user_index]
    args = [sys.executable, str(EXAMPLES / "chat" / "chat.py")]
    for url in urls:
        args += ["--url", url]
    return [*args, "--user", user.name, "--password", user.password, "--to", peer]


@asynccontextmanager
async def chat_process(*args: str, stdin: bytes = b"") -> AsyncIterator[asyncio.subprocess.Process]:
    """chat.py running with ``stdin`` typed (then end of input); killed if still running."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def wait_for_stderr(proc: asyncio.subprocess.Process, needle: str) -> list[str]:
    """Read chat.py's stderr up to a line containing ``needle``; fail on EOF or timeout."""
    assert proc.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            line = (await proc.stderr.readline()).decode()
            if not line:
                pytest.fail(f"chat.py ended before {needle!r}; stderr: {lines}")
            lines.append(line)
            if needle in line:
                return lines


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    async with asyncio.timeout(TIMEOUT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()

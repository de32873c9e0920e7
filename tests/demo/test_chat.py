"""``examples/chat/chat.py`` as a real process: it survives its node going away, refuses bad
credentials loudly, and speaks the chat format (``{"from", "text"}``) the page also speaks."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.demo.helpers import EXAMPLES, wsmq_send
from wsmq.demo import DemoStack
from wsmq.queue import Queues

pytestmark = pytest.mark.slow
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


async def test_chat_reconnects_to_the_other_node_when_its_node_stops(stack: DemoStack) -> None:
    alice, bob = stack.users
    node_a, node_b = stack.node_urls
    cmd = chat_command(stack, 0, [node_a, node_b], bob.id)
    async with chat_process(*cmd, "--count", "1") as proc:
        await wait_for_stderr(proc, f"is here (on {node_a})")
        await stack.nodes[0].stop()  # SIGTERM: the node closes its sockets with 1001
        lines = await wait_for_stderr(proc, f"is here (on {node_b})")
        assert any("closed with 1001" in line for line in lines), lines
        wsmq_send(stack, alice.id, json.dumps({"from": bob.name, "text": "after the failover"}))
        code, out, err = await finish(proc)
    assert code == 0, err
    assert out == "bob: after the failover\n"


async def test_chat_gives_up_with_an_error_when_no_node_answers(stack: DemoStack) -> None:
    """Bounded: every URL refusing connections ends in exit 1, not a silent 0 or a hang."""
    await asyncio.gather(*(node.stop() for node in stack.nodes))
    cmd = chat_command(stack, 0, stack.node_urls, stack.users[1].id)
    async with chat_process(*cmd, "--retries", "2") as proc:
        code, _, err = await finish(proc)
    assert code == 1
    assert "giving up after 3 failed attempts" in err


async def test_chat_and_plain_text_bodies(stack: DemoStack) -> None:
    """A body not in the chat format is shown as plain text from an unknown sender."""
    alice, bob = stack.users
    wsmq_send(stack, bob.id, "plain words")
    cmd = chat_command(stack, 1, [stack.node_urls[1]], alice.id)
    async with chat_process(*cmd, "--count", "1", stdin=b"hello alice\n") as proc:
        code, out, err = await finish(proc)
    assert code == 0, err
    assert out == "?: plain words\n"
    assert json.loads(await _receive_raw(stack, alice.id)) == {"from": "bob", "text": "hello alice"}


async def _receive_raw(stack: DemoStack, qname: str) -> str:
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        got = await queues.receive_message(qname)
    finally:
        await queues.close()
    assert got is not None
    return got.message

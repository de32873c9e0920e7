"""``examples/chat/chat.py`` as a real process: it survives its node going away, refuses bad
credentials loudly, and speaks the chat format (``{"from", "text"}``) the page also speaks."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.demo.chat_proc import chat_command, chat_process, finish, wait_for_stderr
from tests.demo.helpers import wsmq_send
from wsmq.demo import DemoStack
from wsmq.queue import Queues

pytestmark = pytest.mark.slow


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

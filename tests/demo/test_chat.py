"""``examples/chat/chat.py`` (on ``wsmq.client``) as a real process: it survives its node going
away, renews its token, refuses bad credentials loudly, and speaks the chat format
(``{"from", "text"}``) the page also speaks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

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
        access_token_hash = access_token_hash_of(stack, alice.id)
        await stack.nodes[0].stop()  # SIGTERM: the node closes its sockets with 1001
        lines = await wait_for_stderr(proc, f"is here (on {node_b})")
        assert any("closed with 1001" in line for line in lines), lines
        # No new login (which would revoke alice's access token elsewhere, e.g. in the page).
        assert access_token_hash_of(stack, alice.id) == access_token_hash
        wsmq_send(stack, alice.id, json.dumps({"from": bob.name, "text": "after the failover"}))
        code, out, err = await finish(proc)
    assert code == 0, err
    assert out == "bob: after the failover\n"


async def test_chat_renews_its_token_in_band_before_it_expires(tmp_path: Path) -> None:
    """A 4 s x-token gets the node's ``expiring`` warning at half its lifetime (it is shorter
    than the 60 s warning), about 2 s in: the client library asks chat.py for tokens, chat.py
    gets a fresh x-token from /auth/token (keeping its access token) and the socket stays
    open."""
    async with DemoStack(port=0, log_to=tmp_path, token_ttl=4) as stack:
        alice, bob = stack.users
        cmd = chat_command(stack, 0, [stack.node_urls[0]], bob.id)
        async with chat_process(*cmd, "--count", "1") as proc:
            await wait_for_stderr(proc, "is here")
            access_token_hash = access_token_hash_of(stack, alice.id)
            lines = await wait_for_stderr(proc, "new x-token from /auth/token")
            assert not any("lost" in line for line in lines), lines  # no reconnect
            assert access_token_hash_of(stack, alice.id) == access_token_hash
            wsmq_send(stack, alice.id, json.dumps({"from": "bob", "text": "still there?"}))
            code, out, err = await finish(proc)
    assert code == 0, err
    assert out == "bob: still there?\n"
    assert "is here" not in err and "lost" not in err, err  # the same connection throughout


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


def access_token_hash_of(stack: DemoStack, user_id: str) -> str:
    """The stored hash of the user's access token: it changes on every login."""
    users = json.loads(stack.users_file.read_text())["users"]
    return str(next(u["accessTokenHash"] for u in users if str(u["_id"]) == user_id))


async def _receive_raw(stack: DemoStack, qname: str) -> str:
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        got = await queues.receive_message(qname)
    finally:
        await queues.close()
    assert got is not None
    return got.message

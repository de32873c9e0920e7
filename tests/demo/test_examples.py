"""Every file in ``examples/`` runs, as a user would run it, against a live two-node stack.

One stack serves the whole module (starting two nodes is the slow part); each test starts from
empty queues.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from tests.demo.helpers import EXAMPLES, wsmq_send
from wsmq.demo import SHARED_QUEUE, DemoStack
from wsmq.queue import Queues

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]
TIMEOUT = 30.0
PROMPTLY = 10.0  # seconds for a refused Node client to exit (it takes well under one)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DemoStack]:
    async with DemoStack(port=0, log_to=tmp_path_factory.mktemp("examples")) as demo:
        yield demo


@pytest_asyncio.fixture(loop_scope="module")
async def stack(shared_stack: DemoStack) -> DemoStack:
    """The shared stack with its queues emptied (nothing left by the previous test)."""
    client = aioredis.Redis.from_url(shared_stack.queue_redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    queues = Queues.from_url(shared_stack.queue_redis_url)
    try:
        for qname in (*(u.id for u in shared_stack.users), SHARED_QUEUE):
            await queues.create_queue(qname)
    finally:
        await queues.close()
    return shared_stack


async def run(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run a command to completion (bounded); returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(f"{args[:2]} timed out\nstdout: {out.decode()}\nstderr: {err.decode()}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def py(example: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / example)]


async def login(stack: DemoStack, index: int) -> dict[str, Any]:
    user = stack.users[index]
    async with aiohttp.ClientSession() as http:
        body = {"userName": user.name, "password": user.password}
        async with http.post(stack.node_http_urls[0] + "/auth/login", json=body) as resp:
            assert resp.status == 200
            data: dict[str, Any] = await resp.json()
            return data


async def counts(stack: DemoStack, qname: str) -> int:
    queues = Queues.from_url(stack.queue_redis_url)
    try:
        return (await queues.get_queue_attributes(qname)).msgs
    finally:
        await queues.close()


async def test_publisher_then_python_client_acks(stack: DemoStack) -> None:
    alice = stack.users[0]
    url = stack.queue_redis_url
    code, out, err = await run(*py("publisher.py"), alice.id, "one", '{"n": 2}', "--redis-url", url)
    assert code == 0, err
    ids = [json.loads(line)["id"] for line in out.splitlines()]
    assert len(ids) == 2
    code, out, err = await run(
        *py("client.py"),
        *("--url", stack.node_urls[0], "--url", stack.node_urls[1]),
        *("--user", alice.name, "--password", alice.password),
        *("--queue", alice.id, "--count", "2"),
    )
    assert code == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert [m["message"] for m in got] == ["one", '{"n": 2}']  # FIFO, bodies verbatim
    assert [m["id"] for m in got] == ids
    assert all(m["rc"] == 1 and m["queue"] == alice.id for m in got)
    assert await counts(stack, alice.id) == 0  # acked, so deleted


async def test_publisher_reports_a_missing_queue(stack: DemoStack) -> None:
    code, _, err = await run(
        *py("publisher.py"), "no-such-queue", "x", "--redis-url", stack.queue_redis_url
    )
    assert code == 1
    assert json.loads(err)["error"] == "queueNotFound"


async def test_python_client_without_ack_gets_the_message_again(stack: DemoStack) -> None:
    """At-least-once: an unacked message is released when the socket closes, then redelivered."""
    bob = stack.users[1]
    tokens = await login(stack, 1)
    msg_id = wsmq_send(stack, bob.id, "handle me twice")
    common = ["--url", stack.node_urls[1], "--user", bob.name, "--queue", bob.id, "--count", "1"]
    code, out, err = await run(
        *py("client.py"), *common, "--access-token", tokens["accessToken"], "--no-ack"
    )
    assert code == 0, err
    first = json.loads(out)
    assert (first["id"], first["rc"]) == (msg_id, 1)
    code, out, err = await run(*py("client.py"), *common, "--access-token", tokens["accessToken"])
    assert code == 0, err
    second = json.loads(out)
    assert (second["id"], second["rc"], second["message"]) == (msg_id, 2, "handle me twice")
    assert await counts(stack, bob.id) == 0


async def test_python_client_refuses_bad_credentials(stack: DemoStack) -> None:
    alice = stack.users[0]
    code, _, err = await run(
        *py("client.py"),
        *("--url", stack.node_urls[0], "--queue", alice.id),
        *("--token", "not.a.jwt", "--access-token", "nope"),
    )
    assert code == 1
    assert "# rejected: " in err and "HTTP 401" in err  # AuthenticationFailed, no retry loop


@pytest.fixture
def node_env(node_modules: Path) -> dict[str, str]:
    return {"NODE_PATH": str(node_modules)}


@pytest.mark.interop
async def test_node_ws_client_with_headers_gets_legacy_frames(
    stack: DemoStack, node_env: dict[str, str]
) -> None:
    alice = stack.users[0]
    tokens = await login(stack, 0)
    wsmq_send(stack, alice.id, '{"payload": "json stays a string"}')
    env = {
        **node_env,
        "WSMQ_X_TOKEN": tokens["token"],
        "WSMQ_X_ACCESS_TOKEN": tokens["accessToken"],
        "WSMQ_COUNT": "1",
    }
    script = str(EXAMPLES / "node_ws_client.js")
    code, out, err = await run("node", script, stack.node_urls[1], alice.id, env=env)
    assert code == 0, err
    assert out == '{"payload": "json stays a string"}\n'  # the original's {"message": ...}
    assert await counts(stack, alice.id) == 0  # legacy: deleted once written

    # Logging in by itself (WSMQ_USER/WSMQ_PASSWORD), and a rejected token.
    wsmq_send(stack, alice.id, "second")
    env = {**node_env, "WSMQ_USER": alice.name, "WSMQ_PASSWORD": alice.password, "WSMQ_COUNT": "1"}
    code, out, err = await run("node", script, stack.node_urls[0], alice.id, env=env)
    assert (code, out) == (0, "second\n"), err
    env = {**node_env, "WSMQ_X_TOKEN": "x.y.z", "WSMQ_X_ACCESS_TOKEN": "nope"}
    started = time.monotonic()
    code, out, err = await run("node", script, stack.node_urls[0], alice.id, env=env)
    assert code == 1 and "rejected: HTTP 401" in err
    assert time.monotonic() - started < PROMPTLY  # the refused request is destroyed


@pytest.mark.interop
async def test_node_rsmq_publisher_reaches_a_wsmq_client(
    stack: DemoStack, node_env: dict[str, str]
) -> None:
    bob = stack.users[1]
    script = str(EXAMPLES / "node_rsmq_publisher.js")
    code, out, err = await run(
        "node", script, bob.id, "from rsmq", stack.queue_redis_url, env=node_env
    )
    assert code == 0, err
    msg_id = json.loads(out)["id"]
    code, out, err = await run(
        *py("client.py"),
        *("--url", stack.node_urls[0], "--user", bob.name, "--password", bob.password),
        *("--queue", bob.id, "--count", "1"),
    )
    assert code == 0, err
    got = json.loads(out)
    assert (got["id"], got["message"]) == (msg_id, "from rsmq")
    code, _, err = await run("node", script, "missing-q", "x", stack.queue_redis_url, env=node_env)
    assert code == 1 and json.loads(err)["error"] == "queueNotFound"


async def test_chat_between_two_users_on_two_nodes(stack: DemoStack) -> None:
    alice, bob = stack.users

    def chat(user_index: int, node: int, peer: str) -> list[str]:
        user = stack.users[user_index]
        return [
            *py("chat/chat.py"),
            *("--url", stack.node_urls[node], "--user", user.name),
            *("--password", user.password, "--to", peer, "--count", "1"),
        ]

    # Both type a line and wait for one line back; each message waits in Redis until read.
    results = await asyncio.gather(
        run(*chat(0, 0, bob.id), stdin=b"hi bob\n"),
        run(*chat(1, 1, alice.id), stdin=b"hello alice\n"),
    )
    (a_code, a_out, a_err), (b_code, b_out, b_err) = results
    assert a_code == 0, a_err
    assert b_code == 0, b_err
    assert a_out == "bob: hello alice\n"
    assert b_out == "alice: hi bob\n"


async def test_chat_exits_non_zero_on_bad_credentials(stack: DemoStack) -> None:
    """A wrong password is said once and ends the chat (exit 1), no reconnect loop."""
    alice, bob = stack.users
    code, out, err = await run(
        *py("chat/chat.py"),
        *("--url", stack.node_urls[0], "--url", stack.node_urls[1]),
        *("--user", alice.name, "--password", "not-" + alice.password, "--to", bob.id),
        stdin=b"",
    )
    assert (code, out) == (1, "")
    assert "login refused for 'alice': HTTP 401" in err
    assert "check --user and --password" in err
    assert "reconnecting" not in err


def readme_node_snippet(url: str) -> str:
    """The README's Node.js `ws` client, with its free variables taken from argv."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = readme.split("**Node.js `ws` client**", 1)[1].split("```js\n", 1)[1].split("```")[0]
    assert '"ws://127.0.0.1:8080/"' in block
    prelude = "const [token, accessToken, userId] = process.argv.slice(2);\n"
    return prelude + block.replace('"ws://127.0.0.1:8080/"', json.dumps(url))


@pytest.mark.interop
async def test_readme_node_snippet_receives_and_exits_on_a_refused_token(
    stack: DemoStack, node_env: dict[str, str], tmp_path: Path
) -> None:
    alice = stack.users[0]
    script = tmp_path / "readme_client.js"
    script.write_text(readme_node_snippet(stack.node_urls[0]))

    # Refused tokens: an HTTP 401 before the upgrade, and the process ends (no hang).
    started = time.monotonic()
    code, _, err = await run("node", str(script), "x.y.z", "nope", alice.id, env=node_env)
    assert code == 1 and "rejected 401" in err
    assert time.monotonic() - started < PROMPTLY

    # Good tokens: the message arrives as the original's {"message": ...} frame.
    tokens = await login(stack, 0)
    wsmq_send(stack, alice.id, "hello from the README")
    argv = ["node", str(script), tokens["token"], tokens["accessToken"], alice.id]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **node_env}
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(TIMEOUT):
            line = await proc.stdout.readline()
        assert line == b"hello from the README\n"
    finally:
        proc.kill()
        await proc.communicate()

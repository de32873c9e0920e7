"""``wsmq serve`` and ``web.run_app`` as real processes: SIGHUP restarts with 1012, a prompt
exit, a short start line, a missing users file, a calm log while Redis is down.

Single backend only: these are about the process, not the Redis deployment (the other
backends would run the same thing again).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.cli.serve_cmd import EXIT_RESTART
from wsmq.queue import Queues
from wsmq.testing.nodes import NodeProcess
from wsmq.testing.redisproc import free_port

from .conftest import (
    SECRET,
    V1,
    WSMQ,
    Cred,
    MakeUser,
    recv_close,
    recv_type,
    subscribe,
    wait_for,
)

pytestmark = pytest.mark.backends("single")


async def _log_line(path: Path, text: str, timeout: float = 10.0) -> float:
    """Wait until ``text`` appears in the log file; the monotonic time it was seen."""

    async def present() -> bool:
        return text in path.read_text(errors="replace")

    await wait_for(present, timeout)
    return time.monotonic()


Subscribed = tuple[NodeProcess, aiohttp.ClientWebSocketResponse, Cred]


@pytest.fixture
async def subscribed_node(
    spawn_node: Callable[..., Any],
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    redis_url: str,
) -> Subscribed:
    """A subprocess node with one v1 client holding one message in flight."""
    node = await spawn_node(redis_url)
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=300)
    await queues.send_message(alice.user_id, "in flight")
    async with asyncio.timeout(5):
        ws = await http.ws_connect(node.url, headers=alice.headers, protocols=V1)
    await subscribe(ws, alice.user_id)
    await recv_type(ws, "message")
    return node, ws, alice


async def test_sighup_closes_with_1012_and_exits_for_a_restart(
    subscribed_node: Subscribed, queues: Queues
) -> None:
    node, ws, alice = subscribed_node
    node.proc.send_signal(signal.SIGHUP)
    assert await recv_close(ws) == 1012
    async with asyncio.timeout(10):
        assert await node.proc.wait() == EXIT_RESTART
    attrs = await queues.get_queue_attributes(alice.user_id)
    assert (attrs.msgs, attrs.hiddenmsgs) == (1, 0)  # released for the next node
    await ws.close()


async def test_exits_promptly_after_shutdown_complete_and_start_line_is_short(
    subscribed_node: Subscribed,
) -> None:
    node, ws, _ = subscribed_node
    node.proc.send_signal(signal.SIGTERM)
    assert await recv_close(ws) == 1001
    seen = await _log_line(node.log_path, "shutdown complete")
    async with asyncio.timeout(10):
        assert await node.proc.wait() == 0
    assert time.monotonic() - seen < 1.0
    await ws.close()
    lines = node.log_path.read_text().splitlines()
    start = next(line for line in lines if "gateway listening" in line)
    assert len(start) < 300, start
    assert "node=" in start and "users=FileUserStore" in start and "redis=127.0.0.1:" in start
    settings = next(line for line in lines if "DEBUG wsmq.gateway settings" in line)
    assert "redis_pool_size" in settings and "'secret'" in settings and SECRET not in settings


async def test_missing_users_file_exits_with_one_line(tmp_path: Path, redis_url: str) -> None:
    missing = tmp_path / "nope" / "users.json"
    args = [str(WSMQ), "serve", "--port", "0", "--redis-url", redis_url,
            "--users-file", str(missing), "--secret", SECRET]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    lines = (out + err).decode().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "--create-users-file" in lines[0]
    assert not missing.exists()

    proc = await asyncio.create_subprocess_exec(
        *args, "--create-users-file", "--json", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            ready = json.loads(await proc.stdout.readline())
        assert ready["event"] == "listening"
        assert json.loads(missing.read_text()) == {"version": 1, "users": []}
        assert missing.stat().st_mode & 0o077 == 0  # password hashes will go in here
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await proc.wait()


async def test_redis_down_at_start_logs_one_line_then_calm(
    spawn_node: Callable[..., Any],
) -> None:
    """Against a port where nothing listens: one clear line at start, then at most one line
    per component (each retries with backoff) over a few seconds of retries."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    node = await spawn_node(dead, "--log-level", "info")
    window = 4.0  # a measurement window (several fast retries of each component), not a sync
    await asyncio.sleep(window)
    node.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await node.proc.wait() == 0
    lines = node.log_path.read_text().splitlines()
    warnings = [line for line in lines if " WARNING " in line or " ERROR " in line]
    per_logger = Counter(line.split()[2] for line in warnings)
    assert sum("does not answer" in line for line in warnings) == 1, warnings
    assert all(count <= 2 for count in per_logger.values()), warnings  # gateway: 1 + shutdown
    assert len(warnings) <= 5, warnings


RUN_APP = """
import logging
import sys
from aiohttp import web
from wsmq.gateway import serve

logging.basicConfig(level=logging.INFO)
redis_url, users_file, secret, port = sys.argv[1:5]
app = web.Application()

async def home(request):
    return web.Response(text="host app")

app.router.add_get("/", home)
serve(app, path="/ws", routes_prefix="/wsmq", redis_url=redis_url, users_file=users_file,
      secret=secret, shutdown_timeout=2, poll_interval=0.2)
web.run_app(app, host="127.0.0.1", port=int(port), print=None)
"""


async def test_serve_app_with_web_run_app(
    tmp_path: Path,
    users_file: Path,
    make_user: MakeUser,
    queues: Queues,
    http: aiohttp.ClientSession,
    redis_url: str,
) -> None:
    """``serve(app, ...)`` then ``web.run_app(app)``, nothing awaited by the host: a real client
    connects, subscribes and receives; SIGINT stops the process cleanly (1001, exit 0)."""
    alice = await make_user()
    script = tmp_path / "host_app.py"
    script.write_text(RUN_APP)
    port = free_port()
    host = NodeProcess(
        [sys.executable, str(script), redis_url, str(users_file), SECRET, str(port)],
        tmp_path / "host.log", port=port, ready_path="/wsmq/readyz", name="host app",
    )  # fmt: skip
    try:
        await host.start(ready_timeout=20)
        base = host.http_url
        async with http.get(f"{base}/") as resp:
            assert await resp.text() == "host app"
        async with http.get(f"{base}/healthz") as resp:
            assert resp.status == 404  # the gateway's routes are under the prefix
        async with asyncio.timeout(5):
            ws = await http.ws_connect(f"{base}/ws", headers=alice.headers, protocols=V1)
        await subscribe(ws, alice.user_id)
        await queues.send_message(alice.user_id, "hello host")
        frame = await recv_type(ws, "message")
        assert frame["message"] == "hello host"
        host.send_signal(signal.SIGINT)
        assert await recv_close(ws) == 1001
        assert await host.wait(10) == 0
        await ws.close()
        text = host.log_text()
        assert "shutdown complete" in text and "Traceback" not in text, text
    finally:
        await host.stop(grace=0, sig=signal.SIGKILL)

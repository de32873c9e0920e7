"""The JavaScript client (clients/js) through a Redis outage on a real node: a subscribe
answered ``unavailable`` is retried until Redis is back, then delivers (not ended for good).

The Node side is ``clients/js/test/live-outage.js``; this test owns Redis and the node.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MakeUser, StartNode
from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

pytestmark = [pytest.mark.interop, pytest.mark.backends("single")]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "clients" / "js" / "test" / "live-outage.js"
STEP = 20.0


async def until(proc: asyncio.subprocess.Process, seen: list[dict[str, Any]], event: str) -> None:
    """Read the client's lines (kept in ``seen``) until one of ``event``."""
    assert proc.stdout is not None
    async with asyncio.timeout(STEP):
        while True:
            line = await proc.stdout.readline()
            assert line, f"the client exited before {event!r}: {seen}"
            frame: dict[str, Any] = json.loads(line)
            seen.append(frame)
            assert not (frame["event"] == "error" and frame["fatal"]), seen
            assert frame["event"] != "refused", seen
            if frame["event"] == event:
                return


async def test_js_client_retries_a_subscribe_refused_while_redis_is_down(
    node_modules: Path,
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
) -> None:
    redis = redis_factory(appendonly=True)
    node = await start_node(redis_url=redis.url)
    user = await make_user()
    queues = Queues.from_url(redis.url)
    try:
        await queues.create_queue(user.user_id)
        await queues.send_message(user.user_id, "waited out the outage")
    finally:
        await queues.close()
    await asyncio.to_thread(redis.kill)
    assert node.url is not None
    env = {
        **os.environ,
        "WSMQ_NODE_MODULES": str(node_modules),
        "WSMQ_URL": node.url,
        "WSMQ_X_TOKEN": user.x_token,
        "WSMQ_ACCESS_TOKEN": user.access_token,
        "WSMQ_QUEUE": user.user_id,
    }
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    seen: list[dict[str, Any]] = []
    try:
        await until(proc, seen, "error")  # refused: Redis is down
        assert seen[-1] == {"event": "error", "fatal": False, "code": "unavailable"}
        await asyncio.to_thread(redis.start)
        await until(proc, seen, "message")
        assert seen[-1] == {"event": "message", "message": "waited out the outage", "acked": True}
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        await until(proc, seen, "done")
        async with asyncio.timeout(STEP):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    events = [e["event"] for e in seen]
    assert {"event": "ready", "active": True} in seen, seen
    assert events.index("subscribed") < events.index("message"), seen
    assert {"event": "subscribed", "queue": user.user_id, "device": None, "node": node.url} in seen

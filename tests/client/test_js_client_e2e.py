"""The JavaScript client (clients/js) against two real nodes: one is SIGKILLed mid-stream, the
other stopped gracefully later, and every message is still handled and acked.

The Node side is ``clients/js/test/live-failover.js``; this test owns Redis and the nodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MakeUser, SpawnNode
from wsmq.queue import Queues
from wsmq.testing.nodes import NodeProcess

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "clients" / "js" / "test" / "live-failover.js"
N = 400
WINDOW = 20
PAUSE_AT = (100, 250)  # handled counts at which the handler waits while a node goes down
STEP = 30.0  # seconds any one step may take


class LiveClient:
    """The Node process running the client: JSON lines out, commands in."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    async def until(self, event: str) -> dict[str, Any]:
        """Read lines until one of ``event`` (every line is kept in :attr:`events`)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(STEP):
            while True:
                line = await self.proc.stdout.readline()
                assert line, f"the client exited before {event!r}: {self.events}"
                frame: dict[str, Any] = json.loads(line)
                self.events.append(frame)
                if frame.get("event") == "error" and frame.get("fatal"):
                    raise AssertionError(f"the client stopped: {frame}")
                if frame.get("event") == event:
                    return frame

    async def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{text}\n".encode())
        await self.proc.stdin.drain()

    def closes(self, node: NodeProcess) -> list[int]:
        return [
            e["code"] for e in self.events if e["event"] == "disconnected" and e["node"] == node.url
        ]


async def queue_empty(queues: Queues, qname: str, within: float) -> None:
    """Poll the queue's counters until it holds no message (the client's acks all landed)."""
    async with asyncio.timeout(within):
        while (await queues.get_queue_attributes(qname)).msgs:
            await asyncio.sleep(0.05)


@pytest.mark.backends("single")  # the client's failover is under test, not Redis deployments
@pytest.mark.parametrize("dedupe", [0, 1000], ids=["no-dedupe", "dedupe"])
async def test_js_client_survives_a_killed_and_a_stopped_node(
    node_modules: Path,
    spawn_node: SpawnNode,
    make_user: MakeUser,
    queues: Queues,
    redis_url: str,
    dedupe: int,
) -> None:
    # A small window: most messages are still in Redis when a node goes down.
    first = await spawn_node(redis_url, "--window", str(WINDOW))
    second = await spawn_node(redis_url, "--window", str(WINDOW))
    user = await make_user()
    qname = user.user_id
    await queues.create_queue(qname, vt=2)  # a SIGKILLed node's in-flight messages return soon
    sent = await queues.send_messages(qname, [f"m{i}" for i in range(N)])
    env = {
        **os.environ,
        "WSMQ_NODE_MODULES": str(node_modules),
        "WSMQ_URLS": f"{first.url},{second.url}",
        "WSMQ_X_TOKEN": user.x_token,
        "WSMQ_ACCESS_TOKEN": user.access_token,
        "WSMQ_QUEUE": qname,
        "WSMQ_EXPECT": str(N),
        "WSMQ_PAUSE_AT": ",".join(map(str, PAUSE_AT)),
        "WSMQ_DEDUPE": str(dedupe),
    }
    # A node:test file run in this process (stdin and stdout stay ours); the test runner's
    # report goes to stderr, and a failed JS assertion is a non-zero exit.
    proc = await asyncio.create_subprocess_exec(
        "node", "--test-reporter=spec", "--test-reporter-destination=stderr", str(SCRIPT),
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    client = LiveClient(proc)
    try:
        assert (await client.until("connected"))["node"] == first.url
        # 1. Mid-stream, with a delivery in the handler: the first node is SIGKILLed (its
        # in-flight window returns after vt) and started again on its port.
        await client.until("paused")
        await first.restart(sig=signal.SIGKILL, ready_timeout=20)
        await client.command("go")
        # 2. Later, the second node is stopped gracefully (1001) and started again.
        await client.until("paused")
        await second.restart(sig=signal.SIGTERM, ready_timeout=20)
        await client.command("go")
        await client.until("all")
        await queue_empty(queues, qname, within=STEP)
        await client.command("stop")
        done = await client.until("done")
        async with asyncio.timeout(STEP):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    figures = {k: done[k] for k in ("handled", "unique", "duplicates", "staleAcks")}
    print(f"\njs client failover (dedupe={dedupe}): sent={len(sent)} {figures}")
    assert set(done["ids"]) == set(sent)
    assert done["unique"] == N
    assert client.closes(first)[0] == 1006, client.events  # SIGKILL: no close frame
    assert 1001 in client.closes(second), client.events  # SIGTERM: "server shutting down"
    connected = [e["node"] for e in client.events if e["event"] == "connected"]
    assert connected[:2] == [first.url, second.url] and first.url in connected[2:], connected
    assert done["staleAcks"] >= len(PAUSE_AT)  # the paused deliveries' connections were gone
    if dedupe:
        assert done["duplicates"] == 0  # every redelivery of a handled message was filtered
    else:
        assert done["duplicates"] >= len(PAUSE_AT)  # at-least-once: those came again

"""Descriptor limits of a real ``wsmq serve`` process: the node raises its soft open-file limit
to the hard one, and when descriptors run out, ``accept()`` errors are one warning per
interval, not a traceback per attempt, and the node serves again once descriptors free up.

Run on the single Redis backend only: the limits are the node's, whatever Redis it uses.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import SECRET
from wsmq.testing.nodes import NodeProcess

pytestmark = pytest.mark.backends("single")

#: A node under asyncio's own event loop (``wsmq serve`` prefers uvloop, whose libuv drops
#: connections it cannot accept without reporting them): prints its port, then serves.
NODE = """
import asyncio, json, sys
from wsmq.gateway import serve
from wsmq.logs import configure_logging

async def main() -> None:
    gateway = await serve(**json.loads(sys.argv[1]))
    print(json.dumps({"port": gateway.port}), flush=True)
    await asyncio.Event().wait()

configure_logging("warning")
asyncio.run(main())
"""


Node = NodeProcess
StartNode = Callable[..., Awaitable[Node]]


def nofile(soft: int, hard: int) -> Callable[[], None]:
    def set_limits() -> None:  # runs in the child, before it execs the node
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return set_limits


def nofile_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


@pytest.fixture
async def node_in(redis_url: str, tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start a node process with the given open-file limits and settings."""
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": []}))
    nodes: list[Node] = []

    async def start(limits: Callable[[], None], **settings: object) -> Node:
        config = {
            "host": "127.0.0.1", "port": 0, "redis_url": redis_url, "secret": SECRET,
            "users_file": str(users), "shutdown_timeout": 1.0, **settings,
        }  # fmt: skip
        node = NodeProcess(
            [sys.executable, "-c", NODE, json.dumps(config)],
            tmp_path / f"node{len(nodes)}.log",
            preexec=limits,
        )
        nodes.append(node)
        return await node.start(ready_timeout=20)

    yield start
    for node in nodes:
        await node.stop(grace=0, sig=signal.SIGKILL)


async def healthz_status(port: int) -> int | None:
    """``/healthz`` on a new connection: the status, or ``None`` when refused or cut."""
    try:
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError):
        return None
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 else None


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc")
async def test_the_node_raises_its_soft_open_file_limit_to_the_hard_one(
    node_in: StartNode,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"the hard open-file limit ({hard}) leaves nothing to raise")
    node = await node_in(nofile(256, hard))
    assert nofile_of(node.pid) == (hard, hard)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
async def test_out_of_descriptors_accept_errors_are_one_warning_and_the_node_recovers(
    node_in: StartNode,
) -> None:
    limit = 160
    # No cap on connections not yet upgraded and no header deadline to speak of: descriptors
    # must really run out.
    node = await node_in(nofile(limit, limit), max_http_connections=0, header_timeout=120)
    assert nofile_of(node.pid) == (limit, limit)
    assert await healthz_status(node.port) == 200
    used = len(os.listdir(f"/proc/{node.pid}/fd"))
    log_size = node.log_path.stat().st_size
    clients: list[asyncio.StreamWriter] = []
    try:
        for _ in range(limit - used + 40):  # the ones over the limit wait in the backlog
            _, writer = await asyncio.open_connection("127.0.0.1", node.port)
            clients.append(writer)

        def accept_lines() -> list[str]:
            with node.log_path.open("rb") as f:
                f.seek(log_size)
                text = f.read().decode(errors="replace")
            return [line for line in text.splitlines() if "accept" in line]

        async with asyncio.timeout(10):
            while not accept_lines():
                await asyncio.sleep(0.05)
        # asyncio retries accept() every second, up to the backlog each time: 3 rounds.
        await asyncio.sleep(3.0)
        lines = accept_lines()
        assert len(lines) == 1, lines[:3]
        assert "out of file descriptors" in lines[0] and "Traceback" not in lines[0]
        assert len(os.listdir(f"/proc/{node.pid}/fd")) >= limit - 1
    finally:
        for writer in clients:
            writer.close()
    status = None
    async with asyncio.timeout(15):
        while (status := await healthz_status(node.port)) != 200:
            await asyncio.sleep(0.1)
    assert status == 200
    assert node.proc.returncode is None

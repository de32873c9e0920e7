"""The shared test infrastructure: :class:`wsmq.testing.nodes.NodeProcess` and
:func:`wsmq.testing.users.make_users`, on a real ``wsmq serve`` and a real Redis."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from wsmq.auth import AuthConfig, FileUserStore, verify_jwt
from wsmq.testing.nodes import NodeProcess, NodeStartError
from wsmq.testing.users import CHEAP_HASHER, make_users

SECRET = "testing-secret-0123456789abcdef0123456789"


def _node(tmp_path: Path, redis_url: str, *extra: str) -> NodeProcess:
    return NodeProcess.serve(
        tmp_path / "node.log", "--redis-url", redis_url, "--users-file",
        str(tmp_path / "users.json"), "--create-users-file", "--secret", SECRET, *extra,
    )  # fmt: skip


async def _healthz(node: NodeProcess) -> int:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
        http.get(f"{node.http_url}/healthz") as resp,
    ):
        return resp.status


async def test_node_starts_restarts_on_its_port_and_stops(tmp_path: Path, redis_url: str) -> None:
    node = await _node(tmp_path, redis_url).start(ready_timeout=20)
    try:
        port, first_pid = node.port, node.pid
        assert port and node.url == f"ws://127.0.0.1:{port}/" and node.alive
        assert await _healthz(node) == 200
        await node.restart(20, sig=signal.SIGKILL)  # a crash, then the same port again
        assert (node.port, node.alive) == (port, True) and node.pid != first_pid
        assert await _healthz(node) == 200
        assert await node.stop() == 0  # SIGTERM: a graceful exit
        assert node.returncode == 0 and not node.alive
        assert "shutdown complete" in node.log_text()
        assert await node.stop() == 0  # twice is fine
    finally:
        await node.stop(grace=0, sig=signal.SIGKILL)


async def test_node_that_exits_during_start_up_raises_with_its_log(
    tmp_path: Path, redis_url: str
) -> None:
    node = NodeProcess.serve(
        tmp_path / "node.log", "--redis-url", redis_url,
        "--users-file", str(tmp_path / "missing" / "users.json"), "--secret", SECRET,
    )  # fmt: skip
    with pytest.raises(NodeStartError, match=r"users\.json.*exit status 2"):
        await node.start(ready_timeout=20)
    assert node.returncode == 2 and not node.alive


async def test_node_not_ready_in_time_is_killed(tmp_path: Path) -> None:
    node = NodeProcess(
        ["sleep", "30"], tmp_path / "sleep.log", port=1, ready_path="/readyz", name="sleeper"
    )
    async with asyncio.timeout(10):
        with pytest.raises(NodeStartError, match=r"sleeper on port 1 not ready in 0\.3s"):
            await node.start(ready_timeout=0.3)
    assert not node.alive


async def test_make_users_gives_working_credentials(tmp_path: Path) -> None:
    users_file = tmp_path / "users.json"
    users = await make_users(
        users_file, 3, prefix="t", queues=["jobs"], publish=["jobs"], secret=SECRET, ttl=60
    )
    assert [u.name for u in users] == ["t0", "t1", "t2"]
    store = FileUserStore(users_file, hasher=CHEAP_HASHER)
    try:
        for user in users:
            stored = await store.get(user.user_id)
            assert stored is not None and stored.queues == ("jobs",) == user.queues
            assert verify_jwt(user.x_token, AuthConfig(secret=SECRET)).user_id == user.user_id
            assert set(user.headers) == {"x-token", "x-access-token"}
        # an open store stays open; no secret, no x-token
        (named,) = await make_users(store, names=["named"], passwords=["pw-123456"])
        assert (named.name, named.password, named.x_token) == ("named", "pw-123456", "")
        assert await store.get_by_name("named") is not None
    finally:
        await store.close()

"""End-to-end fixtures: real gateway nodes on real ports, real Redis, real WebSocket clients.

Every test that uses Redis (``redis_url``, directly or through ``start_node``/``queues``) runs on
three backends: ``single`` (one private redis-server), ``cluster`` (3-master Redis Cluster) and
``sentinel`` (1 master, 1 replica, 3 sentinels); ids read ``test_x[cluster]``.  A test that
needs a particular deployment narrows the list with ``@pytest.mark.backends("single", ...)``
and says why next to the marker. With fast paths off (``WSMQ_FAST_PATHS=0``) the list shrinks
to ``single`` unless ``WSMQ_FAST_PATHS_OFF_BACKENDS=all`` or ``WSMQ_CHAOS=1`` (see
``ALL_BACKENDS_FAST_PATHS_OFF``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq import _compat
from wsmq.auth import FileUserStore
from wsmq.gateway import Gateway, serve
from wsmq.queue import Queues
from wsmq.testing.nodes import NodeProcess
from wsmq.testing.users import CHEAP_HASHER, TestUser, make_users
from wsmq.testing.users import token_for as signed_token

SECRET = "e2e-test-secret-0123456789abcdef0123456789"
V1 = ("wsmq.v1",)
BACKENDS = ("single", "cluster", "sentinel")
_BACKEND_URL_FIXTURE = {"single": "redis_url", "cluster": "cluster_url", "sentinel": "sentinel_url"}


#: ``True``: the fast-paths-off pass (``WSMQ_FAST_PATHS=0``, run by ``scripts/test``) runs every
#: test on all of its backends, like the main pass. By default that pass runs on ``single`` only
#: (docs/testing.md): what it proves is that the public-API fallbacks of aiohttp and redis-py
#: behave like the fast paths, and the main pass already runs every test on every backend.
#: Modules that set ``FAST_PATHS_OFF_ALL_BACKENDS = True`` (the core delivery paths), and tests
#: marked for ``cluster``/``sentinel`` only, keep all their backends in that pass.
ALL_BACKENDS_FAST_PATHS_OFF = (
    os.environ.get("WSMQ_CHAOS") == "1" or os.environ.get("WSMQ_FAST_PATHS_OFF_BACKENDS") == "all"
)


def _backends(metafunc: pytest.Metafunc) -> tuple[str, ...]:
    marker = metafunc.definition.get_closest_marker("backends")
    backends: tuple[str, ...] = marker.args if marker is not None else BACKENDS
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown backends {unknown}")
    if (
        not _compat.allowed()
        and not ALL_BACKENDS_FAST_PATHS_OFF
        and not getattr(metafunc.module, "FAST_PATHS_OFF_ALL_BACKENDS", False)
        and "single" in backends
    ):
        return ("single",)
    return backends


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_backend" not in metafunc.fixturenames:
        return
    metafunc.parametrize("redis_backend", _backends(metafunc), indirect=True)


@pytest.fixture
def redis_backend(request: pytest.FixtureRequest) -> str:
    """``single``, ``cluster`` or ``sentinel`` (parametrized by ``pytest_generate_tests``)."""
    backend: str = request.param
    return backend


@pytest.fixture
def redis_url(redis_backend: str, request: pytest.FixtureRequest) -> str:
    """The test backend's URL, emptied before the test (overrides the root single-server one).

    Requested from inside this fixture, ``redis_url`` is the root conftest's fixture it
    overrides: the session's private single server.
    """
    url: str = request.getfixturevalue(_BACKEND_URL_FIXTURE[redis_backend])
    return url


Cred = TestUser


MakeUser = Callable[..., Awaitable[Cred]]
StartNode = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.json"


@pytest.fixture
def user_store(users_file: Path) -> FileUserStore:
    # Cheap scrypt: these tests are about the gateway, not password hashing.
    return FileUserStore(users_file, hasher=CHEAP_HASHER)


@pytest.fixture
def make_user(user_store: FileUserStore) -> MakeUser:
    counter = iter(range(10_000))

    async def make(
        name: str | None = None,
        *,
        queues: tuple[str, ...] = (),
        publish: tuple[str, ...] = (),
        ttl: int | None = None,
    ) -> Cred:
        (user,) = await make_users(
            user_store, names=[name or f"user{next(counter)}"], queues=queues, publish=publish,
            secret=SECRET, ttl=ttl,
        )  # fmt: skip
        return user

    return make


def token_for(user_id: str, ttl: int | None = None) -> str:
    return signed_token(user_id, SECRET, ttl)


@pytest.fixture
async def start_node(redis_url: str, users_file: Path) -> AsyncIterator[StartNode]:
    nodes: list[Gateway] = []

    async def start(**overrides: Any) -> Gateway:
        kwargs: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "redis_url": redis_url,
            "secret": SECRET,
            "users_file": str(users_file),
            "poll_interval": 0.2,
            "shutdown_timeout": 3.0,
            "heartbeat": 5.0,
        }
        kwargs.update(overrides)
        async with asyncio.timeout(10):
            gateway = await serve(**kwargs)
        nodes.append(gateway)
        return gateway

    yield start
    for gateway in nodes:
        async with asyncio.timeout(10):
            await gateway.close()


WSMQ = Path(sys.executable).with_name("wsmq")
SpawnNode = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
async def spawn_node(users_file: Path, tmp_path: Path) -> AsyncIterator[SpawnNode]:
    """``wsmq serve`` as a real subprocess (for signals, exit codes and its log)."""
    nodes: list[NodeProcess] = []

    async def spawn(redis_url: str, *extra: str) -> NodeProcess:
        node = NodeProcess.serve(
            tmp_path / f"node{len(nodes)}.log",
            "--redis-url", redis_url, "--users-file", str(users_file), "--create-users-file",
            "--secret", SECRET, "--poll-interval", "0.2", "--shutdown-timeout", "3",
            "--log-level", "debug", *extra,
        )  # fmt: skip
        nodes.append(node)
        return await node.start(ready_timeout=20)

    yield spawn
    for node in nodes:
        await node.stop(grace=0, sig=signal.SIGKILL)


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    """A queue client on the test's Redis, closed after the test."""
    q = Queues.from_url(redis_url)
    yield q
    await q.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def connect(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    cred: Cred | None = None,
    *,
    v1: bool = True,
    **kwargs: Any,
) -> aiohttp.ClientWebSocketResponse:
    assert gateway.url is not None
    headers = dict(kwargs.pop("headers", {}))
    if cred is not None:
        headers.update(cred.headers)
    async with asyncio.timeout(5):
        ws: aiohttp.ClientWebSocketResponse = await http.ws_connect(
            gateway.url, headers=headers, protocols=V1 if v1 else (), **kwargs
        )
    return ws


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    """The next text frame as JSON (fails on close or timeout)."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data}"
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def recv_type(
    ws: aiohttp.ClientWebSocketResponse, kind: str, timeout: float = 10.0
) -> dict[str, Any]:
    """Skip frames until one of ``type`` ``kind`` arrives."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await recv(ws, timeout)
            if frame.get("type") == kind:
                return frame


async def subscribe(ws: aiohttp.ClientWebSocketResponse, qname: str) -> None:
    """Subscribe (v1); the reply comes before any message of the queue."""
    await ws.send_str(f"/subscribe/{qname}")
    assert await recv(ws) == {"type": "subscribed", "queue": qname}


async def recv_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> int | None:
    """Read until the server closes; return the close code."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return ws.close_code
            if msg.type is aiohttp.WSMsgType.ERROR:
                return ws.close_code


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll an external condition (Redis state, another process) until it holds."""
    async with asyncio.timeout(timeout):
        while not await cond():
            await asyncio.sleep(0.02)

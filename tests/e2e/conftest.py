"""End-to-end fixtures: real gateway nodes on real ports, real Redis, real WebSocket clients.

Every test that uses Redis (``redis_url``, directly or through ``start_node``/``queues``) runs on
three backends: ``single`` (one private redis-server), ``cluster`` (3-master Redis Cluster) and
``sentinel`` (1 master, 1 replica, 3 sentinels); ids read ``test_x[cluster]``.  A test that
needs a particular deployment narrows the list with ``@pytest.mark.backends("single", ...)``
and says why next to the marker.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.auth import AuthConfig, FileUserStore, PasswordHasher, issue_jwt
from wsmq.gateway import Gateway, serve
from wsmq.queue import Queues

SECRET = "e2e-test-secret-0123456789abcdef0123456789"
V1 = ("wsmq.v1",)
BACKENDS = ("single", "cluster", "sentinel")
_BACKEND_URL_FIXTURE = {"single": "redis_url", "cluster": "cluster_url", "sentinel": "sentinel_url"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    backends = marker.args if marker is not None else BACKENDS
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown backends {unknown}")
    metafunc.parametrize("redis_backend", backends, indirect=True)


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


@dataclass(frozen=True)
class Cred:
    """A user with valid tokens."""

    user_id: str
    x_token: str
    access_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-token": self.x_token, "x-access-token": self.access_token}


MakeUser = Callable[..., Awaitable[Cred]]
StartNode = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "users.json"


@pytest.fixture
def user_store(users_file: Path) -> FileUserStore:
    # Cheap scrypt: these tests are about the gateway, not password hashing.
    return FileUserStore(users_file, hasher=PasswordHasher(n=2**4))


@pytest.fixture
def make_user(user_store: FileUserStore) -> MakeUser:
    cfg = AuthConfig(secret=SECRET)
    counter = iter(range(10_000))

    async def make(
        name: str | None = None,
        *,
        queues: tuple[str, ...] = (),
        publish: tuple[str, ...] = (),
        ttl: int | None = None,
    ) -> Cred:
        user, access = await user_store.create(
            name or f"user{next(counter)}", "password-123", queues, publish
        )
        token, _ = issue_jwt(user.id, cfg, ttl=ttl)
        return Cred(user.id, token, access)

    return make


def token_for(user_id: str, ttl: int | None = None) -> str:
    return issue_jwt(user_id, AuthConfig(secret=SECRET), ttl=ttl)[0]


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


class NodeProcess:
    """``wsmq serve`` as a real subprocess (for signals, exit codes and its log)."""

    def __init__(
        self, proc: asyncio.subprocess.Process, url: str, port: int, log_path: Path
    ) -> None:
        self.proc = proc
        self.url = url
        self.port = port
        self.log_path = log_path
        self.http_url = f"http://127.0.0.1:{port}"


@pytest.fixture
async def spawn_node(users_file: Path, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    procs: list[asyncio.subprocess.Process] = []

    async def spawn(redis_url: str, *extra: str) -> NodeProcess:
        log_path = tmp_path / f"node{len(procs)}.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            proc = await asyncio.create_subprocess_exec(
                str(WSMQ), "serve", "--host", "127.0.0.1", "--port", "0", "--redis-url", redis_url,
                "--users-file", str(users_file), "--create-users-file", "--secret", SECRET,
                "--json", "--poll-interval", "0.2", "--shutdown-timeout", "3",
                "--log-level", "debug", *extra,
                stdout=asyncio.subprocess.PIPE, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        ready = json.loads(line)
        return NodeProcess(proc, ready["url"], ready["port"], log_path)

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(10):
            await proc.wait()


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

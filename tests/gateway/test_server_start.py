"""``serve()``: awaitable, async context manager, ``serve_forever()``; a failed or cancelled
start leaves nothing behind (tasks, Redis connections); ``routes_prefix``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from wsmq.gateway import serve
from wsmq.testing.redisproc import RedisProcess

SECRET = "start-test-secret-0123456789abcdef0123456789"


def _node_kwargs(redis_url: str, tmp_path: Path, **more: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": 0,
        "redis_url": redis_url,
        "secret": SECRET,
        "users_file": str(tmp_path / "users.json"),
        "shutdown_timeout": 2.0,
        **more,
    }


def _other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


async def _client_count(admin: aioredis.Redis) -> int:
    clients = await admin.client_list()  # type: ignore[no-untyped-call, unused-ignore]
    return len(clients) - 1  # minus the admin connection itself


async def _wait_clients(admin: aioredis.Redis, expected: int) -> int:
    """Redis notices a closed connection a moment later: wait (bounded) for the count."""
    count = await _client_count(admin)
    async with asyncio.timeout(5):
        while count != expected:
            await asyncio.sleep(0.02)
            count = await _client_count(admin)
    return count


@pytest.fixture
def private_redis(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    return redis_factory()


@pytest.fixture
async def admin(private_redis: RedisProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(private_redis.url)
    yield client
    await client.aclose()


async def test_await_async_with_and_serve_forever(
    private_redis: RedisProcess, admin: aioredis.Redis, tmp_path: Path
) -> None:
    kwargs = _node_kwargs(private_redis.url, tmp_path)
    before = await _client_count(admin)
    gateway = await serve(**kwargs)
    assert gateway.port is not None and not gateway.closed
    forever = asyncio.create_task(gateway.serve_forever())
    await asyncio.sleep(0)
    assert not forever.done()
    async with asyncio.timeout(10):
        await gateway.close()
        await forever  # returns once the node is closed
    assert gateway.closed

    async with serve(**kwargs) as gateway2:
        assert gateway2.http_url is not None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{gateway2.http_url}/healthz") as resp,
        ):
            assert resp.status == 200
        forever = asyncio.create_task(gateway2.serve_forever())
        await asyncio.sleep(0.05)
        forever.cancel()  # cancelling serve_forever closes the node
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(10):
                await forever
        assert gateway2.closed
    assert await _wait_clients(admin, before) == before
    assert not _other_tasks()


async def test_port_in_use_leaves_no_task_and_no_redis_connection(
    private_redis: RedisProcess, admin: aioredis.Redis, tmp_path: Path
) -> None:
    kwargs = _node_kwargs(private_redis.url, tmp_path)
    first = await serve(**kwargs)
    try:
        # Let the first node's connections settle (listener, revocations, health).
        await asyncio.sleep(0.3)
        before = await _client_count(admin)
        tasks_before = _other_tasks()
        with pytest.raises(OSError):
            await serve(**{**kwargs, "port": first.port})
        assert await _wait_clients(admin, before) == before
        assert _other_tasks() <= tasks_before
    finally:
        await first.close()


class SilentRedis:
    """A TCP server that accepts and never answers (a Redis that hangs); counts the
    connections the client still holds open."""

    def __init__(self) -> None:
        self.open = 0
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        self.writers.add(writer)
        try:
            while await reader.read(65536):
                pass  # swallow commands, answer nothing
        finally:
            self.open -= 1
            self.writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):  # what a failing test left open
            writer.close()
        await self.server.wait_closed()


async def test_start_cancelled_while_redis_hangs_closes_everything(tmp_path: Path) -> None:
    """A start cut short (here by a caller's timeout while Redis does not answer) closes the
    connections it opened and leaves no task behind."""
    silent = SilentRedis()
    async with silent as url:
        tasks_before = _other_tasks()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.0):
                await serve(**_node_kwargs(url, tmp_path))
        assert silent.accepted > 0  # it did get as far as connecting
        async with asyncio.timeout(5):
            while silent.open:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0)
        assert _other_tasks() <= tasks_before


async def test_routes_prefix(redis_url: str, tmp_path: Path) -> None:
    async with (
        serve(**_node_kwargs(redis_url, tmp_path, routes_prefix="/ops")) as gateway,
        aiohttp.ClientSession() as http,
    ):
        base = gateway.http_url
        for path, status in [
            ("/ops/healthz", 200),
            ("/ops/readyz", 200),
            ("/ops/metrics", 200),
            ("/healthz", 404),
            ("/metrics", 404),
        ]:
            async with http.get(f"{base}{path}") as resp:
                assert resp.status == status, path
        async with http.post(f"{base}/ops/auth/login", json={}) as resp:
            assert resp.status == 400  # the route exists (and refuses an empty body)
        async with http.post(f"{base}/auth/login", json={}) as resp:
            assert resp.status in (404, 405)


async def test_serve_awaited_inside_the_host_apps_on_startup(
    redis_url: str, tmp_path: Path
) -> None:
    """``await serve(app)`` from the host app's own ``on_startup`` (its startup hooks are frozen
    by then) starts at once and still closes with the app."""
    from aiohttp import web

    from wsmq.gateway import Gateway
    from wsmq.testing.redisproc import free_port

    app = web.Application()
    started: list[Gateway] = []

    async def on_startup(app: web.Application) -> None:
        kwargs = _node_kwargs(redis_url, tmp_path)
        del kwargs["host"], kwargs["port"]
        started.append(await serve(app, **kwargs))

    app.on_startup.append(on_startup)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as resp,
        ):
            assert resp.status == 200
    finally:
        async with asyncio.timeout(10):
            await runner.cleanup()
    assert started[0].closed

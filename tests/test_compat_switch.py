"""The fast-path switch: ``WSMQ_FAST_PATHS=0`` / ``set_fast_paths(False)`` turns every speed
fast path of :mod:`wsmq._compat` off, and each public path then works on real parts.

``scripts/test`` runs this file (and ``tests/e2e``) once more with ``WSMQ_FAST_PATHS=0``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from wsmq import _compat
from wsmq._compat.aiohttp_release import release_http_state
from wsmq._compat.redis_write import direct_write
from wsmq.connections import redis_from_url
from wsmq.gateway.frames import FrameBatchWriter

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def fast_paths_off() -> Iterator[None]:
    _compat.set_fast_paths(False)
    try:
        yield
    finally:
        _compat.set_fast_paths(True)


def test_env_zero_leaves_only_the_guards_on() -> None:
    code = "from wsmq import _compat; print(_compat.allowed(), ','.join(_compat.enabled()))"
    env = {**os.environ, "WSMQ_FAST_PATHS": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    allowed, names = out.stdout.strip().split(" ", 1) if " " in out.stdout else (out.stdout, "")
    assert allowed.strip() == "False"
    guards = {p.name for p in _compat.fast_paths() if not p.speed}
    assert set(filter(None, names.strip().split(","))) <= guards


def test_every_fast_path_declares_itself() -> None:
    paths = _compat.fast_paths()
    assert {p.name for p in paths} >= {"raw_frames", "hiredis_pubsub", "direct_write"}
    for path in paths:
        assert path.library in ("aiohttp", "redis", "asyncio")
        assert path.touches and path.fallback
        assert all(v.endswith(".") for v in path.verified), path


def test_the_env_switch_cannot_be_overridden_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSMQ_FAST_PATHS", "0")
    try:
        _compat.set_fast_paths(True)
        assert not _compat.allowed()
        assert not {p.name for p in _compat.fast_paths() if p.speed} & set(_compat.enabled())
    finally:
        monkeypatch.delenv("WSMQ_FAST_PATHS")
        _compat.set_fast_paths(True)


@pytest.mark.usefixtures("fast_paths_off")
async def test_redis_commands_take_redis_pys_write(redis_url: str) -> None:
    assert direct_write(Connection) is Connection
    client = redis_from_url(redis_url, max_connections=2, decode_responses=True)
    assert isinstance(client, Redis)
    try:
        assert client.connection_pool.connection_class is Connection
        await asyncio.gather(*(client.incr("n") for _ in range(20)))  # waits for a slot
        assert await client.get("n") == "20"
    finally:
        await client.aclose()


@pytest.mark.usefixtures("fast_paths_off")
async def test_pubsub_replies_come_through_get_message(redis_url: str) -> None:
    from wsmq.queue import RealtimeListener  # noqa: F401  (wsmq.realtime imports via wsmq.queue)
    from wsmq.realtime.pubsub_reader import PubSubReader

    client = Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe("ch")
        reader = PubSubReader(pubsub)
        assert not reader.fast
        await client.publish("ch", "x")
        kinds: list[str] = []
        async with asyncio.timeout(5):
            while "message" not in kinds:
                kinds += [kind for kind, *_ in await reader.read(1.0)]
        assert kinds[0] == "subscribe"
    finally:
        await pubsub.aclose()
        await client.aclose()


@pytest.mark.usefixtures("fast_paths_off")
async def test_frames_go_through_send_str_and_no_http_state_is_released(
    aiohttp_client: ClientFactory,
) -> None:
    seen: list[object] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        writer = FrameBatchWriter(ws)
        seen.extend([writer.fast, writer.ping(), release_http_state(request)])
        await writer.send_texts([b"one", "two \u00e9".encode()])
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/") as ws:
        texts = []
        async with asyncio.timeout(5):
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    texts.append(msg.data)
    assert texts == ["one", "two \u00e9"]
    assert seen == [False, False, False]

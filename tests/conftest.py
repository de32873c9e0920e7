"""Shared fixtures: private redis-server processes on free loopback ports, never :6379."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from wsmq.redisproc import RedisProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisProcess]:
    """One private redis-server for the whole session (tests get it flushed)."""
    proc = RedisProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def redis_url(redis_proc: RedisProcess) -> Iterator[str]:
    """URL of the session's private Redis, emptied before the test."""
    if not redis_proc.ping():  # a previous test stopped it
        redis_proc.start()
    client = redis.Redis.from_url(redis_proc.url)
    try:
        client.flushall()
        client.script_flush()
    finally:
        client.close()
    yield redis_proc.url


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisProcess]]:
    """Start fresh private redis-servers (for restart/kill tests); all cleaned up after."""
    started: list[RedisProcess] = []

    def factory(**kwargs: object) -> RedisProcess:
        proc = RedisProcess(**kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    try:
        yield factory
    finally:
        for proc in started:
            proc.cleanup()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned npm packages installed by scripts/test (skip when unavailable)."""
    path = Path(os.environ.get("WSMQ_NODE_MODULES", ROOT / ".npm-interop" / "node_modules"))
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed: interop test skipped")
    if not (path / "rsmq").is_dir():
        pytest.skip(f"npm packages not installed in {path}: run scripts/test to install them")
    return path

"""Shared fixtures: private redis-server processes on free loopback ports, never :6379.

Besides the single server: a real 3-master Redis Cluster and a real Sentinel setup (1 master,
1 replica, 3 sentinels), shared per session by the scale-out and the gateway e2e suites (flushed
before each test); tests that kill nodes get their own deployment from a factory, so they never
disturb the others.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from wsmq.testing.redisproc import RedisProcess
from wsmq.testing.redisproc_cluster import RedisCluster3, SentinelSetup

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


def _need_binaries() -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed: cluster tests skipped")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster3]:
    """A 3-master Redis Cluster (no replicas) for the whole session."""
    _need_binaries()
    cluster = RedisCluster3(replicas=0)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster3) -> str:
    """``redis+cluster://`` URL of the session cluster, every master flushed before the test."""
    redis_cluster.wait_ok()
    for node in redis_cluster.masters():
        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5)
        try:
            client.flushall()
            client.script_flush()
        finally:
            client.close()
    return redis_cluster.url


@pytest.fixture
def cluster_factory() -> Iterator[Callable[..., RedisCluster3]]:
    """Start private clusters (``replicas=1`` for failover tests); all removed after the test."""
    _need_binaries()
    started: list[RedisCluster3] = []

    def factory(**kwargs: object) -> RedisCluster3:
        cluster = RedisCluster3(**kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster.start()

    try:
        yield factory
    finally:
        for cluster in started:
            cluster.cleanup()


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """1 master, 1 replica, 3 sentinels for the whole session (never killed)."""
    setup = SentinelSetup()
    try:
        yield setup.start()
    finally:
        setup.cleanup()


@pytest.fixture
def sentinel_url(sentinel_setup: SentinelSetup) -> str:
    """``redis+sentinel://`` URL of the session setup, master flushed before the test."""
    client = redis.Redis(host="127.0.0.1", port=sentinel_setup.current_master().port)
    try:
        client.flushall()
        client.script_flush()
    finally:
        client.close()
    return sentinel_setup.url


@pytest.fixture
def sentinel_factory() -> Iterator[Callable[..., SentinelSetup]]:
    """Start private Sentinel setups (for failover tests); all removed after the test."""
    started: list[SentinelSetup] = []

    def factory(**kwargs: object) -> SentinelSetup:
        setup = SentinelSetup(**kwargs)  # type: ignore[arg-type]
        started.append(setup)
        return setup.start()

    try:
        yield factory
    finally:
        for setup in started:
            setup.cleanup()

"""Limits of /auth/login, /auth/token, /auth/logout: real aiohttp servers, real redis-servers.

Every node's limiter shares its counters through Redis; the clock is injected (all nodes share
it, as NTP-synchronised nodes do) and the per-user delay is recorded instead of slept.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from wsmq.auth import AuthConfig, Authenticator, FileUserStore, add_auth_routes
from wsmq.auth.limiter import AuthLimiter, AuthLimits
from wsmq.auth.routes import key_salt
from wsmq.auth.shared_counters import SharedCounters
from wsmq.testing.redisproc import RedisProcess

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
PROXY = ("127.0.0.1", "::1")  # the test client is a trusted proxy: X-Forwarded-For is the client


@dataclass
class Clock:
    now: float = 1_800_000_000.0
    delays: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class Node:
    client: TestClient[Any, Any]
    limiter: AuthLimiter

    async def call(
        self, path: str, body: dict[str, str], client_ip: str = "1.1.1.1", **headers: str
    ) -> tuple[int, dict[str, Any], str | None]:
        resp = await self.client.post(
            path, json=body, headers={"X-Forwarded-For": client_ip, **headers}
        )
        return resp.status, await resp.json(), resp.headers.get("Retry-After")

    async def login(self, name: str, password: str, client_ip: str = "1.1.1.1") -> int:
        body = {"userName": name, "password": password}
        status, _, _ = await self.call("/auth/login", body, client_ip)
        return status


StartNode = Callable[..., Awaitable[Node]]


async def guess_alice(node: Node, times: int) -> None:
    """An attacker tries alice's password from many addresses."""
    for i in range(times):
        assert await node.login("alice", f"guess{i}", f"10.0.0.{i}") == 401


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def start_node(
    aiohttp_client: ClientFactory,
    file_store: FileUserStore,
    cfg: AuthConfig,
    redis_url: str,
    clock: Clock,
) -> AsyncIterator[StartNode]:
    """Start an app with the auth routes; every node shares ``redis_url`` unless told."""
    limiters: list[AuthLimiter] = []

    async def start(limits: AuthLimits, url: str | None = None, **counters: Any) -> Node:
        shared = SharedCounters(url or redis_url, **counters)
        limiter = AuthLimiter(
            limits, shared, salt=key_salt(cfg), clock=lambda: clock.now, sleep=clock.sleep
        )
        limiters.append(limiter)
        app = web.Application()
        auth = Authenticator(cfg, file_store)
        add_auth_routes(app, auth, file_store, None, limiter=limiter, trusted_proxies=PROXY)
        return Node(await aiohttp_client(app), limiter)

    try:
        yield start
    finally:
        for limiter in limiters:
            await limiter.aclose()


@pytest.mark.parametrize("path", ["/auth/token", "/auth/logout"])
async def test_token_guesses_are_limited_per_address(
    start_node: StartNode, file_store: FileUserStore, path: str
) -> None:
    await file_store.create("alice", "s3cret")
    node = await start_node(AuthLimits(attempts_per_ip=5))
    guesses = [
        node.call(path, {"userName": name}, **{"x-access-token": f"guess{i:040d}"})
        for i, name in enumerate(["alice", "nobody"] * 150)
    ]
    async with asyncio.timeout(30):
        answers = await asyncio.gather(*guesses)
    refused = [a for a in answers if a[0] == 429]
    tried = [(status, body) for status, body, _ in answers if status != 429]
    assert len(refused) == 295 and all(body["error"] == "rate_limited" for _, body, _ in refused)
    assert all(retry is not None and 1 <= int(retry) <= 60 for _, _, retry in refused)
    # Existing or not, the five that were tried got the same answer.
    assert tried == [(401, {"error": "invalid_credentials", "message": "invalid credentials"})] * 5
    # Another client is not affected.
    status, body, _ = await node.call(
        path, {"userName": "alice"}, "2.2.2.2", **{"x-access-token": "a" * 43}
    )
    assert (status, body["error"]) == (401, "invalid_credentials")


async def test_limits_are_shared_between_nodes(
    start_node: StartNode, file_store: FileUserStore, clock: Clock
) -> None:
    await file_store.create("alice", "s3cret")
    limits = AuthLimits(attempts_per_ip=4, window=60.0, user_free_failures=2)
    a, b = await start_node(limits), await start_node(limits)
    # Per address: the two nodes count together.
    statuses = [await node.login("nobody", "x") for node in (a, b, a, b, a, b)]
    assert statuses == [401, 401, 401, 401, 429, 429]
    # One request more every window / attempts_per_ip, on either node.
    clock.now += 15.0
    assert [await b.login("nobody", "x"), await a.login("nobody", "x")] == [401, 429]
    # Per user: failures on one node slow alice's attempts down on the other.
    clock.delays.clear()
    for i, node in enumerate((a, b, a)):
        assert await node.login("alice", "wrong", f"10.0.0.{i}") == 401
    assert await b.login("alice", "s3cret", "10.0.0.9") == 200
    assert clock.delays == [0.25]


async def test_per_user_limit_slows_down_and_never_locks_out(
    start_node: StartNode, file_store: FileUserStore, clock: Clock
) -> None:
    await file_store.create("alice", "s3cret")
    node = await start_node(
        AuthLimits(attempts_per_ip=1000, window=60.0, user_free_failures=3, user_max_delay=2.0)
    )
    await guess_alice(node, 10)
    assert clock.delays == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    # alice still gets in, after the longest delay, not a 429.
    clock.delays.clear()
    assert await node.login("alice", "s3cret", "192.168.1.7") == 200
    assert clock.delays == [2.0]
    # Unknown names are counted alike (the delay says nothing about existence).
    clock.delays.clear()
    for _ in range(5):
        assert await node.login("nobody", "x", "10.9.9.9") == 401
    assert clock.delays == [0.25]
    # Failures drain: one every window / user_free_failures.
    clock.delays.clear()
    clock.now += 60.0 * 3
    assert await node.login("alice", "s3cret") == 200
    assert clock.delays == []


async def test_optional_lockout(
    start_node: StartNode, file_store: FileUserStore, clock: Clock
) -> None:
    await file_store.create("alice", "s3cret")
    node = await start_node(
        AuthLimits(attempts_per_ip=1000, window=60.0, user_free_failures=3, user_lockout=3)
    )
    await guess_alice(node, 3)
    status, body, retry = await node.call(
        "/auth/login", {"userName": "alice", "password": "s3cret"}
    )
    assert (status, body["error"], retry) == (429, "rate_limited", "20")
    clock.now += 20.0
    assert await node.login("alice", "s3cret") == 200


async def test_deep_json_is_parsed_after_the_address_limit(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    node = await start_node(AuthLimits(attempts_per_ip=2))
    answers = []
    for _ in range(4):
        resp = await node.client.post("/auth/login", data="[" * 5000)
        answers.append((resp.status, (await resp.json())["error"]))
    assert answers == [(400, "bad_request")] * 2 + [(429, "rate_limited")] * 2
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_counter_keys_hide_names_and_addresses_and_expire(
    start_node: StartNode, redis_url: str
) -> None:
    node = await start_node(AuthLimits())
    assert await node.login("alice@example.com", "wrong", "203.0.113.9") == 401
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = sorted(map(str, await client.keys("*")))
        assert [k.rsplit(":", 1)[0] for k in keys] == ["rsmq:ratelimit:ip", "rsmq:ratelimit:user"]
        assert not any("alice" in k or "203.0.113" in k for k in keys)
        ttls = [await client.pttl(k) for k in keys]
        assert all(0 < ttl <= 60_000 for ttl in ttls)
    finally:
        await client.aclose()


async def test_redis_down_counts_on_the_node(
    start_node: StartNode,
    redis_factory: Callable[..., RedisProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc = redis_factory()
    retry_at = [0.0]
    node = await start_node(
        AuthLimits(attempts_per_ip=3), proc.url, timeout=1.0, clock=lambda: retry_at[0]
    )
    assert await node.login("nobody", "x") == 401
    proc.stop()
    caplog.set_level(logging.INFO, logger="wsmq.auth")
    # Fails open onto local counters: answers stay 401, the limit still holds per node.
    assert [await node.login("nobody", "x") for _ in range(4)] == [401, 401, 401, 429]
    warnings = [r for r in caplog.records if "counting on this node" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert not node.limiter.counters.shared
    proc.start()
    restarted = aioredis.Redis.from_url(proc.url)
    try:
        await restarted.flushall()
        retry_at[0] = 10.0  # past retry_interval: Redis is tried again
        assert await node.login("nobody", "x") == 401
        assert node.limiter.counters.shared
        assert len(await restarted.keys("rsmq:ratelimit:ip:*")) == 1  # counted there again
    finally:
        await restarted.aclose()
    assert any("answers again" in r.getMessage() for r in caplog.records)

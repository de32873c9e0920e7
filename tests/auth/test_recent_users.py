"""RecentUsers: store reads reused for a short TTL, one read per user at a time, bounded."""

from __future__ import annotations

import asyncio

import pytest

from wsmq.auth import User
from wsmq.auth.recent_users import RecentUsers


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_reads_are_reused_within_the_ttl_and_shared_while_in_flight() -> None:
    clock = Clock()
    reads: list[str] = []
    gate = asyncio.Event()

    async def load(user_id: str) -> User | None:
        reads.append(user_id)
        await gate.wait()
        return User(user_id, "name")

    recent = RecentUsers(load, ttl=1.0, clock=clock)
    waiting = [asyncio.create_task(recent.get("u1")) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    users = await asyncio.gather(*waiting)
    assert reads == ["u1"] and all(u is not None and u.id == "u1" for u in users)
    clock.now = 0.9
    await recent.get("u1")
    assert reads == ["u1"]  # still fresh
    clock.now = 1.0
    await recent.get("u1")
    assert reads == ["u1", "u1"]  # at most ttl old


async def test_errors_are_not_cached_and_a_cancelled_caller_does_not_cancel_the_read() -> None:
    calls = 0
    gate = asyncio.Event()

    async def load(user_id: str) -> User | None:
        nonlocal calls
        calls += 1
        await gate.wait()
        if calls == 1:
            raise ConnectionError("down")
        return None

    recent = RecentUsers(load, ttl=10.0)
    first = asyncio.create_task(recent.get("u1"))
    second = asyncio.create_task(recent.get("u1"))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    with pytest.raises(ConnectionError):
        await second
    assert await recent.get("u1") is None and calls == 2


async def test_memory_is_bounded() -> None:
    async def load(user_id: str) -> User | None:
        return None

    recent = RecentUsers(load, ttl=60.0, max_entries=10)
    for i in range(1000):
        await recent.get(f"u{i}")
    assert len(recent._entries) == 10 and not recent._loading

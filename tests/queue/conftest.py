"""Fixtures for the queue-layer tests: a Queues object and a raw client on the private Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from wsmq.queue import Queues


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(redis_url, realtime=True)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()

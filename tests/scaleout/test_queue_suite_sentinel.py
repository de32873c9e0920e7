"""The queue layer's own tests (``tests/queue``), re-run through Sentinel.

``queues``, ``raw`` and ``redis_url`` go through a ``redis+sentinel://`` URL to the master of a
real Sentinel setup (1 master, 1 replica, 3 sentinels), RSMQ's key layout unchanged.  Tests that
build a plain ``Redis.from_url`` client or restart servers are left out (see ``EXCLUDE``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from wsmq.connections import redis_from_url
from wsmq.queue import Queues, RealtimeListener

from .suites import borrow_tests

EXCLUDE = {
    # Build a plain redis.asyncio.Redis from the URL, which does not know redis+sentinel://.
    "test_instance_from_url_and_from_existing_client": "Redis.from_url on a sentinel URL",
    "test_listener_from_existing_client_and_namespace": "Redis.from_url on a sentinel URL",
    "test_namespace": "Redis.from_url on a sentinel URL",
    "test_realtime_publishes_queue_size": "Redis.from_url on a sentinel URL",
}

globals().update(borrow_tests({"queues", "redis_url", "listener", "raw"}, EXCLUDE))


@pytest.fixture
def redis_url(sentinel_url: str) -> str:
    return sentinel_url


@pytest.fixture
async def queues(sentinel_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(sentinel_url, realtime=True)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def raw(sentinel_url: str) -> AsyncIterator[Redis]:
    client = redis_from_url(sentinel_url, decode_responses=True)
    assert isinstance(client, Redis)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def listener(sentinel_url: str) -> AsyncIterator[RealtimeListener]:
    lst = RealtimeListener(sentinel_url, ns="rsmq", backoff_min=0.05, backoff_max=0.2)
    try:
        yield lst
    finally:
        await lst.aclose()

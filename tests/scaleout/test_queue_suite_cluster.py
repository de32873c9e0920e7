"""The queue layer's own tests (``tests/queue``), re-run on a real 3-master Redis Cluster.

``queues`` and ``redis_url`` point at the cluster, so every borrowed test exercises the cluster
key layout, per-slot scripts and sharded pub/sub.  Tests that read RSMQ's raw keys (``raw``),
restart servers, or need something a cluster cannot offer are left out (see ``EXCLUDE``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wsmq.queue import Queues, RealtimeListener

from .suites import borrow_tests

EXCLUDE = {
    # Builds a plain redis.asyncio.Redis from the URL, which cannot speak to a cluster.
    "test_instance_from_url_and_from_existing_client": "Redis.from_url on a cluster URL",
    "test_listener_from_existing_client_and_namespace": "Redis.from_url on a cluster URL",
    # Dead-letter queues in another slot are refused in the cluster layout (documented); the
    # same-slot case is covered in test_queue_cluster.py.
    "test_dead_letter_in_batch_receive_keeps_the_others": "cross-slot dead-letter queue",
    "test_missing_dlq_keeps_delivering": "cross-slot dead-letter queue",
    "test_dlq_configured_by_another_instance": "cross-slot dead-letter queue",
    "test_inbox_follows_the_queue_max_receive_count_and_dead_letter": "cross-slot dead letters",
    # Runs both key layouts on its server; a cluster only takes the cluster layout (that half
    # runs on the single server).
    "test_replays_of_any_send_change_nothing": "forces RSMQ's layout",
}

globals().update(borrow_tests({"queues", "redis_url", "listener"}, EXCLUDE))


@pytest.fixture
def redis_url(cluster_url: str) -> str:
    return cluster_url


@pytest.fixture
async def queues(cluster_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(cluster_url, realtime=True)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def listener(cluster_url: str) -> AsyncIterator[RealtimeListener]:
    lst = RealtimeListener(cluster_url, ns="rsmq", backoff_min=0.05, backoff_max=0.2)
    try:
        yield lst
    finally:
        await lst.aclose()

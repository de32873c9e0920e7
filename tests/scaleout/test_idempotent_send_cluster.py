"""The idempotent-send tests (``tests/queue/test_idempotent_send.py``) that need only ``queues``,
re-run on a real 3-master Redis Cluster: the send markers carry the queue's hash tag, so the
scripts (which now take a third key) stay in one slot, and a replayed script call changes
nothing there either.  The lost-reply tests need a proxy in front of one server and stay there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wsmq.queue import Queues

from .suites import borrow_tests

borrowed = borrow_tests({"queues"}, {}, modules=("tests.queue.test_idempotent_send",))
assert len(borrowed) >= 3, "the idempotent-send tests were renamed or moved"
globals().update(borrowed)


@pytest.fixture
async def queues(cluster_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(cluster_url, realtime=True)
    try:
        yield q
    finally:
        await q.close()

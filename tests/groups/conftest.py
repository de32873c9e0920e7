"""Fixtures for the group tests: every test that asks for ``url`` runs on a single private
redis-server, a real 3-master Redis Cluster and a real Sentinel setup (``test_x[single]``,
``test_x[cluster]``, ``test_x[sentinel]``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wsmq.queue import Queues
from wsmq.queue.keys import KeyLayout
from wsmq.queue.slots import slot

_URL_FIXTURE = {"single": "redis_url", "cluster": "cluster_url", "sentinel": "sentinel_url"}


@pytest.fixture(params=list(_URL_FIXTURE))
def url(request: pytest.FixtureRequest) -> str:
    """The backend's URL, emptied before the test."""
    value: str = request.getfixturevalue(_URL_FIXTURE[request.param])
    return value


@pytest.fixture
async def queues(url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(url, realtime=True)
    try:
        yield q
    finally:
        await q.close()


def names_on_every_master(count: int = 3, prefix: str = "member") -> list[str]:
    """Queue names whose cluster-layout keys fall in different thirds of the slot range, so on
    the test cluster (3 masters, slots split evenly by ``redis-cli --cluster create``) each
    lives on another master; in the default layout they are just names."""
    keys = KeyLayout("rsmq", cluster=True)
    found: dict[int, str] = {}
    i = 0
    while len(found) < count:
        name = f"{prefix}{i}"
        third = slot(keys.messages(name)) * count // 16384
        found.setdefault(third, name)
        i += 1
    return [found[t] for t in sorted(found)]

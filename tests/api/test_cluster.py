"""The API on a Redis Cluster (the cluster key layout): publish, views, peek, purge, redrive,
idempotency, nodes and rates, each touching keys of several slots."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
from redis.crc import key_slot

from wsmq.queue import Queues

from .conftest import Api, StartNode


def _same_slot_as(qname: str) -> str:
    want = key_slot(qname.encode())
    for n in itertools.count():
        name = f"dlq{n}"
        if key_slot(name.encode()) == want:
            return name
    raise AssertionError("unreachable")


@pytest.fixture
async def cluster_queues(cluster_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(cluster_url)
    yield q
    await q.close()


async def test_api_on_a_cluster(
    cluster_url: str,
    cluster_queues: Queues,
    start_node: StartNode,
    http: aiohttp.ClientSession,
    keys: dict[str, str],
) -> None:
    queues = cluster_queues
    node = await start_node(redis_url=cluster_url, rate_sample_interval=0.2)
    other = await start_node(redis_url=cluster_url)
    assert node.http_url is not None
    api = Api(http, node.http_url, keys)
    dlq = _same_slot_as("work")

    assert (await api.call("PUT", f"/api/queues/{dlq}", json={}))[0] == 201
    status, body, _ = await api.call(
        "PUT", "/api/queues/work", json={"maxReceiveCount": 1, "deadLetterQueue": dlq}
    )
    assert status == 201, body
    payload = {"messages": [{"message": f"m{i}"} for i in range(4)]}
    headers = {"Idempotency-Key": "c1"}
    first = await api.call("POST", "/api/queues/work/messages", json=payload, headers=headers)
    again = await api.call("POST", "/api/queues/work/messages", json=payload, headers=headers)
    assert first[0] == 201 and again[0] == 200 and first[1]["ids"] == again[1]["ids"]

    status, body, _ = await api.call("GET", "/api/queues/work/messages", params={"peek": "10"})
    assert [m["message"] for m in body["messages"]] == [f"m{i}" for i in range(4)]

    got = await queues.receive_messages("work", 4, vt=0)
    assert len(got) == 4 and await queues.receive_messages("work", 4) == []  # dead-lettered
    status, listed, _ = await api.call("GET", "/api/queues")
    by_name = {q["name"]: q for q in listed["queues"]}
    assert by_name["work"]["deadLetterQueue"] == {"name": dlq, "depth": 4}
    assert by_name[dlq]["deadLetterFor"] == ["work"]

    status, body, _ = await api.call("POST", f"/api/queues/{dlq}/redrive", json={"count": 3})
    assert (status, body["moved"], body["to"]) == (200, 3, "work")
    assert (await queues.get_queue_attributes("work")).msgs == 3
    status, body, _ = await api.call("POST", "/api/queues/work/purge", params={"confirm": "work"})
    assert (status, body["purged"]) == (200, 3)

    async with asyncio.timeout(10):
        while True:
            status, body, _ = await api.call("GET", "/api/nodes")
            if {n["url"] for n in body["nodes"]} == {node.url, other.url}:
                break
            await asyncio.sleep(0.1)
        while not (await api.call("GET", "/api/queues/work/rates"))[1]["points"]:
            await asyncio.sleep(0.1)

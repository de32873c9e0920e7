"""What a queue listing costs Redis: a fixed number of round trips whatever the number of
queues, and one read shared by concurrent listings (review: with thousands of queues one read
key at 600 requests a minute drove hundreds of thousands of Redis commands a second)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio.client import Pipeline, Redis

from wsmq.api import views as views_module
from wsmq.api.rates import RateSampler
from wsmq.api.views import QueueViews
from wsmq.queue import Queues
from wsmq.queue.admin import QueueAdmin, QueueOverview

from .conftest import Api, StartNode

QUEUES = 200


class RoundTrips:
    """Counts this process's Redis round trips (a command, or a pipeline sent at once), and
    those that name a queue of the test (prefix ``cost``)."""

    def __init__(self) -> None:
        self.total = 0
        self.naming_queues = 0

    def count(self, args: tuple[Any, ...]) -> None:
        self.total += 1
        if any("cost" in str(a) for a in args):
            self.naming_queues += 1


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[RoundTrips]:
    trips = RoundTrips()
    command: Any = Redis.execute_command
    execute = Pipeline.execute

    async def counted_command(self: Redis, *args: Any, **options: Any) -> Any:
        trips.count(args)
        return await command(self, *args, **options)

    async def counted_execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        trips.count(tuple(a for cmd in self.command_stack for a in cmd[0]))
        return await execute(self, raise_on_error)

    monkeypatch.setattr(Redis, "execute_command", counted_command)
    monkeypatch.setattr(Pipeline, "execute", counted_execute)
    yield trips


async def _many_queues(queues: Queues) -> None:
    for n in range(QUEUES):
        await queues.create_queue(f"cost{n:04d}")
    await queues.set_queue_attributes("cost0001", dead_letter_queue="cost0000")
    await queues.send_message("cost0002", "hello")


async def test_a_listing_of_200_queues_costs_a_few_round_trips(
    start_node: StartNode,
    keys: dict[str, str],
    http: aiohttp.ClientSession,
    queues: Queues,
    round_trips: RoundTrips,
) -> None:
    await _many_queues(queues)
    node = await start_node(rate_sample_interval=0, node_announce_interval=60)
    api = Api(http, str(node.http_url), keys)
    await api.call("GET", "/api/me", "reader")  # the key index is loaded
    round_trips.total = round_trips.naming_queues = 0
    status, body, _ = await api.call("GET", "/api/queues", "reader")
    assert status == 200
    assert len(body["queues"]) == QUEUES
    by_name = {q["name"]: q for q in body["queues"]}
    assert by_name["cost0001"]["deadLetterQueue"] == {"name": "cost0000", "depth": 0}
    assert by_name["cost0000"]["deadLetterFor"] == ["cost0001"]
    assert by_name["cost0002"]["visible"] == 1 and by_name["cost0002"]["oldestAge"] is not None
    assert round_trips.naming_queues <= 3, round_trips.naming_queues
    assert round_trips.total < 20, round_trips.total

    round_trips.total = round_trips.naming_queues = 0
    status, body, _ = await api.call("GET", "/api/queues/cost0000", "reader")
    assert (status, body["deadLetterFor"]) == (200, ["cost0001"])
    status, body, _ = await api.call("GET", "/api/queues/cost0001", "reader")
    assert (status, body["deadLetterQueue"]) == (200, {"name": "cost0000", "depth": 0})
    status, body, _ = await api.call(
        "POST", "/api/queues/cost0000/redrive", "admin", json={}
    )  # the target found among 200 queues
    assert (status, body["to"]) == (200, "cost0001")
    assert round_trips.total < 40, round_trips.total


async def test_concurrent_listings_share_one_read(
    start_node: StartNode,
    keys: dict[str, str],
    http: aiohttp.ClientSession,
    queues: Queues,
    round_trips: RoundTrips,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views_module, "LISTING_TTL", 60.0)  # a slow machine still shares
    await _many_queues(queues)
    node = await start_node(rate_sample_interval=0, node_announce_interval=60)
    api = Api(http, str(node.http_url), keys)
    await api.call("GET", "/api/me", "reader")
    round_trips.total = round_trips.naming_queues = 0
    replies = await asyncio.gather(*(api.call("GET", "/api/queues", "reader") for _ in range(20)))
    assert all(status == 200 and len(body["queues"]) == QUEUES for status, body, _ in replies)
    assert round_trips.naming_queues <= 3, round_trips.naming_queues  # one read of the queues

    # A write through the API shows in the very next listing.
    status, _, _ = await api.call("PUT", "/api/queues/costnew", "admin", json={})
    assert status == 201
    status, body, _ = await api.call("GET", "/api/queues", "reader")
    assert len(body["queues"]) == QUEUES + 1


async def test_the_shared_listing_is_read_again_after_its_ttl(queues: Queues) -> None:
    now = [0.0]
    admin = QueueAdmin(queues)
    views = QueueViews(queues, admin, RateSampler(admin, 0), ttl=1.0, clock=lambda: now[0])
    reads = 0
    overview = admin.overview

    async def counted(names: Iterable[str]) -> tuple[int, dict[str, QueueOverview]]:
        nonlocal reads
        reads += 1
        return await overview(names)

    admin.overview = counted  # type: ignore[method-assign,assignment]
    await queues.create_queue("ttl1")
    assert [q["name"] for q in await views.all()] == ["ttl1"]
    await queues.create_queue("ttl2")  # not through the API: shows after the ttl
    now[0] = 0.5
    assert [q["name"] for q in await views.all()] == ["ttl1"]
    now[0] = 1.5
    assert [q["name"] for q in await views.all()] == ["ttl1", "ttl2"]
    assert reads == 2
    views.invalidate()
    await views.all()
    assert reads == 3

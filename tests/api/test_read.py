"""GET /api/queues, /api/queues/{q}, peek, rates."""

from __future__ import annotations

import asyncio

import aiohttp

from wsmq.api.rates import RateSampler
from wsmq.queue import Queues
from wsmq.queue.admin import QueueAdmin

from .conftest import Api, StartNode


async def test_queue_list_and_detail(api: Api, queues: Queues) -> None:
    await queues.create_queue("dead")
    await queues.create_queue("work", vt=60, max_receive_count=3, dead_letter_queue="dead")
    await queues.create_queue("empty")
    for i in range(3):
        await queues.send_message("work", f"m{i}")
    await queues.send_message("work", "later", delay=100)
    await queues.receive_message("work")
    await queues.send_message("dead", "x")

    status, body, _ = await api.call("GET", "/api/queues", "reader")
    assert status == 200
    by_name = {q["name"]: q for q in body["queues"]}
    assert list(by_name) == ["dead", "empty", "work"]
    work = by_name["work"]
    assert (work["visible"], work["hidden"], work["total"]) == (2, 2, 4)
    assert (work["totalsent"], work["totalrecv"]) == (4, 1)
    assert work["vt"] == 60 and work["maxReceiveCount"] == 3
    assert work["deadLetterQueue"] == {"name": "dead", "depth": 1}
    assert isinstance(work["oldestAge"], float) and work["oldestAge"] >= 0
    assert by_name["dead"]["deadLetterFor"] == ["work"]
    assert by_name["empty"]["oldestAge"] is None
    assert by_name["empty"]["deadLetterQueue"] is None

    status, detail, _ = await api.call("GET", "/api/queues/work", "reader")
    assert status == 200
    assert {k: v for k, v in detail.items() if k != "oldestAge"} == {
        k: v for k, v in work.items() if k != "oldestAge"
    }
    status, detail, _ = await api.call("GET", "/api/queues/dead", "reader")
    assert detail["deadLetterFor"] == ["work"]
    status, body, _ = await api.call("GET", "/api/queues/missing", "reader")
    assert (status, body["error"]) == (404, "queueNotFound")


async def test_peek_does_not_receive_and_truncates(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    ids = [await queues.send_message("q1", body) for body in ("short", "é" * 3000, "third")]
    status, body, _ = await api.call(
        "GET", "/api/queues/q1/messages", "reader", params={"peek": "2"}
    )
    assert status == 200
    msgs = body["messages"]
    assert [m["id"] for m in msgs] == ids[:2]
    assert msgs[0] == {**msgs[0], "message": "short", "truncated": False, "length": 5, "rc": 0}
    assert msgs[1]["truncated"] is True and msgs[1]["length"] == 3000
    assert msgs[1]["message"] == "é" * 1024
    attrs = await queues.get_queue_attributes("q1")
    assert (attrs.totalrecv, attrs.hiddenmsgs) == (0, 0)  # nothing was received
    got = await queues.receive_messages("q1", 3)
    assert [m.rc for m in got] == [1, 1, 1]


async def test_peek_bounds(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    for peek in ("0", "101", "x", "-1"):
        status, body, _ = await api.call(
            "GET", "/api/queues/q1/messages", "reader", params={"peek": peek}
        )
        assert (status, body["error"]) == (400, "invalidValue"), peek
    status, body, _ = await api.call("GET", "/api/queues/q1/messages", "reader")
    assert status == 200 and body["messages"] == []
    status, body, _ = await api.call("GET", "/api/queues/none/messages", "reader")
    assert (status, body["error"]) == (404, "queueNotFound")


async def test_rates_from_counter_samples(queues: Queues) -> None:
    now = [1000.0]
    sampler = RateSampler(QueueAdmin(queues), interval=10, clock=lambda: now[0])
    await queues.create_queue("q1")
    await sampler.sample()
    await sampler.sample()  # at the same instant: no point, no division by zero
    assert sampler.points("q1") == [] and sampler.latest("q1") is None
    await queues.send_messages("q1", ["a"] * 6)
    await queues.receive_messages("q1", 3)
    now[0] += 10
    await sampler.sample()
    (point,) = sampler.points("q1")
    assert point == {
        "t": 1010.0, "seconds": 10.0, "sent": 6, "received": 3,
        "sentPerMinute": 36.0, "receivedPerMinute": 18.0,
    }  # fmt: skip
    assert sampler.latest("q1") == {"sentPerMinute": 36.0, "receivedPerMinute": 18.0}
    # a recreated queue counts from zero, never negative
    await queues.delete_queue("q1")
    await queues.create_queue("q1")
    await queues.send_message("q1", "b")
    now[0] += 10
    await sampler.sample()
    assert sampler.points("q1")[-1]["sent"] == 1
    # history is bounded to 15 minutes
    for _ in range(100):
        now[0] += 10
        await sampler.sample()
    points = sampler.points("q1")
    assert points[0]["t"] >= now[0] - 900 and len(points) <= 91


async def test_rates_endpoint_samples_on_the_node(
    start_node: StartNode, http: aiohttp.ClientSession, keys: dict[str, str], queues: Queues
) -> None:
    await queues.create_queue("q1")
    node = await start_node(rate_sample_interval=0.2)
    assert node.http_url is not None
    api = Api(http, node.http_url, keys)
    async with asyncio.timeout(5):
        while not (await api.call("GET", "/api/queues/q1/rates", "reader"))[1]["points"]:
            await asyncio.sleep(0.1)  # two samples taken: the next ones see the sends
    await queues.send_messages("q1", ["x"] * 5)
    async with asyncio.timeout(5):
        while True:
            status, body, _ = await api.call("GET", "/api/queues/q1/rates", "reader")
            assert status == 200
            if sum(p["sent"] for p in body["points"]) == 5:
                break
            await asyncio.sleep(0.1)
    assert body["interval"] == 0.2 and body["history"] == 900
    status, body, _ = await api.call("GET", "/api/queues/none/rates", "reader")
    assert status == 404


async def test_rates_off(
    start_node: StartNode, http: aiohttp.ClientSession, keys: dict[str, str], queues: Queues
) -> None:
    await queues.create_queue("q1")
    node = await start_node(rate_sample_interval=0)
    assert node.http_url is not None
    api = Api(http, node.http_url, keys)
    status, body, _ = await api.call("GET", "/api/queues/q1/rates", "reader")
    assert (status, body["points"], body["interval"]) == (200, [], 0)
    status, body, _ = await api.call("GET", "/api/queues/q1", "reader")
    assert body["rate"] is None


async def test_groups_show_their_members(api: Api, queues: Queues) -> None:
    await queues.create_queue("inbox-a")
    await queues.create_queue("inbox-b")
    await queues.groups.add("everyone", "inbox-b", "inbox-a")
    status, body, _ = await api.call("GET", "/api/queues", "reader")
    assert status == 200
    by_name = {q["name"]: q for q in body["queues"]}
    assert by_name["everyone"]["groupMembers"] == ["inbox-a", "inbox-b"]
    assert by_name["inbox-a"]["groupMembers"] is None
    status, detail, _ = await api.call("GET", "/api/queues/everyone", "reader")
    assert status == 200 and detail["groupMembers"] == ["inbox-a", "inbox-b"]

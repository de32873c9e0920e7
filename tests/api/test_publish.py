"""POST /api/queues/{q}/messages: single, batch, limits, bad bodies, idempotency."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from wsmq.queue import Queues

from .conftest import Api, StartNode


async def _all_ids(queues: Queues, qname: str) -> list[str]:
    return [str(i) for i in await queues.redis.zrange(queues.keys.messages(qname), 0, -1)]


async def test_single_message_stored_and_received(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    status, body, _ = await api.call(
        "POST", "/api/queues/q1/messages", "publisher", json={"message": "héllo"}
    )
    assert status == 201
    (msg_id,) = body["ids"]
    msg = await queues.receive_message("q1")
    assert msg is not None and msg.id == msg_id and msg.message == "héllo"


async def test_batch_in_order_with_delays(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    messages = [{"message": f"m{i}"} for i in range(5)] + [{"message": "late", "delay": 100}]
    status, body, _ = await api.call(
        "POST", "/api/queues/q1/messages", "publisher", json={"messages": messages}
    )
    assert status == 201
    assert len(body["ids"]) == 6
    got = await queues.receive_messages("q1", 10)
    assert [m.message for m in got] == [f"m{i}" for i in range(5)]
    assert [m.id for m in got] == body["ids"][:5]
    attrs = await queues.get_queue_attributes("q1")
    assert attrs.msgs == 6 and attrs.hiddenmsgs == 6  # 5 in flight, 1 delayed


async def test_missing_queue_404_unless_create(api: Api, queues: Queues) -> None:
    status, body, _ = await api.call("POST", "/api/queues/nope/messages", json={"message": "x"})
    assert status == 404 and body["error"] == "queueNotFound"
    assert not await queues.queue_exists("nope")
    # Creating is administration: a publish-only key may not create queues.
    status, body, _ = await api.call(
        "POST", "/api/queues/nope/messages", "publisher",
        json={"message": "x"}, params={"create": "true"},
    )  # fmt: skip
    assert (status, body["error"]) == (403, "forbidden")
    assert not await queues.queue_exists("nope")
    status, body, _ = await api.call(
        "POST", "/api/queues/nope/messages", json={"message": "x"}, params={"create": "true"}
    )
    assert status == 201
    assert (await queues.get_queue_attributes("nope")).msgs == 1


async def test_batch_limit_and_validation_errors(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1", maxsize=1024)
    cases: list[tuple[object, str]] = [
        ({"messages": [{"message": "x"}] * 1001}, "invalidValue"),
        ({"messages": []}, "invalidValue"),
        ({"messages": "x"}, "invalidValue"),
        ({}, "missingParameter"),
        ({"message": 5}, "messageNotString"),
        ({"message": "x", "delay": -1}, "invalidValue"),
        ({"message": "x", "delay": "soon"}, "invalidValue"),
        ({"messages": [{"message": "ok"}, {"nomessage": 1}]}, "missingParameter"),
        ({"messages": [{"message": "ok"}, {"message": "y" * 2000}]}, "messageTooLong"),
        ({"message": "y" * 2000}, "messageTooLong"),
    ]
    for payload, code in cases:
        status, body, _ = await api.call("POST", "/api/queues/q1/messages", json=payload)
        assert (status, body["error"]) == (400, code), (str(payload)[:80], body)
    assert (await queues.get_queue_attributes("q1")).msgs == 0  # nothing stored by a failure
    status, body, _ = await api.call(
        "POST", "/api/queues/bad%20name/messages", json={"message": "x"}
    )
    assert status == 400 and body["error"] == "invalidFormat"


async def test_bad_json_400_and_oversized_413(
    start_node: StartNode, http: aiohttp.ClientSession, keys: dict[str, str], queues: Queues
) -> None:
    node = await start_node(api_max_body=4096)
    assert node.http_url is not None
    api = Api(http, node.http_url, keys)
    await queues.create_queue("q1")
    for raw in (b"{not json", b"[1,2]", b'"str"', b"[" * 50 + b"]" * 50, b"\xff\xfe"):
        status, body, _ = await api.call("POST", "/api/queues/q1/messages", data=raw)
        assert (status, body["error"]) == (400, "bad_json"), raw[:20]
    big = json.dumps({"message": "x" * 5000}).encode()
    status, body, _ = await api.call("POST", "/api/queues/q1/messages", data=big)
    assert (status, body["error"]) == (413, "body_too_large")

    async def chunks() -> object:  # no Content-Length: the reader must stop at the bound
        for _ in range(10):
            yield b"x" * 1000

    headers = {"Authorization": f"Bearer {keys['all']}"}
    async with http.post(
        f"{node.http_url}/api/queues/q1/messages", data=chunks(), headers=headers
    ) as resp:
        assert resp.status == 413
    assert (await queues.get_queue_attributes("q1")).msgs == 0


async def test_idempotent_replay_returns_same_ids_and_stores_once(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    payload = {"messages": [{"message": "a"}, {"message": "b"}]}
    headers = {"Idempotency-Key": "order-42"}
    first = await api.call("POST", "/api/queues/q1/messages", json=payload, headers=headers)
    again = await api.call("POST", "/api/queues/q1/messages", json=payload, headers=headers)
    assert first[0] == 201 and again[0] == 200
    assert first[1]["ids"] == again[1]["ids"]
    assert again[2].headers["Idempotent-Replayed"] == "true"
    assert sorted(await _all_ids(queues, "q1")) == sorted(first[1]["ids"])
    # the same key with another body is refused; another key stores again
    status, body, _ = await api.call(
        "POST", "/api/queues/q1/messages", json={"message": "c"}, headers=headers
    )
    assert (status, body["error"]) == (422, "idempotency_key_reused")
    other = await api.call(
        "POST", "/api/queues/q1/messages", json=payload, headers={"Idempotency-Key": "order-43"}
    )
    assert other[0] == 201 and set(other[1]["ids"]).isdisjoint(first[1]["ids"])
    assert len(await _all_ids(queues, "q1")) == 4


async def test_concurrent_replays_store_once(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    headers = {"Idempotency-Key": "burst"}
    results = await asyncio.gather(
        *(
            api.call("POST", "/api/queues/q1/messages", json={"message": "x"}, headers=headers)
            for _ in range(10)
        )
    )
    statuses = sorted(r[0] for r in results)
    assert statuses.count(201) == 1
    assert set(statuses) <= {200, 201, 409}
    assert len(await _all_ids(queues, "q1")) == 1


async def test_failed_idempotent_request_may_be_retried(api: Api, queues: Queues) -> None:
    headers = {"Idempotency-Key": "k1"}
    status, _, _ = await api.call(
        "POST", "/api/queues/later/messages", json={"message": "x"}, headers=headers
    )
    assert status == 404
    await queues.create_queue("later")
    status, body, _ = await api.call(
        "POST", "/api/queues/later/messages", json={"message": "x"}, headers=headers
    )
    assert status == 201 and len(body["ids"]) == 1


async def test_idempotency_key_bounds(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1")
    status, body, _ = await api.call(
        "POST", "/api/queues/q1/messages", json={"message": "x"},
        headers={"Idempotency-Key": "k" * 256},
    )  # fmt: skip
    assert (status, body["error"]) == (400, "bad_request")

"""Hostile and careless input to the API: typed errors, no 500s, no cross-key effects, bounded
work (found in the security review of the API)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from wsmq.auth import FileUserStore
from wsmq.queue import Queues
from wsmq.queue.scripts import run_script
from wsmq.testing.redisproc import RedisProcess
from wsmq.testing.users import make_users

from .conftest import SECRET, Api, StartNode


async def test_peek_count_must_be_ascii_digits(api: Api, queues: Queues) -> None:
    # A superscript two and a fullwidth one pass str.isdigit(); int() refuses the first: that
    # was a 500 with a logged traceback.
    await queues.create_queue("q1")
    for raw in ("\u00b2", "\uff11", "+1", " 1", "1.0"):
        status, body, _ = await api.call(
            "GET", "/api/queues/q1/messages", "reader", params={"peek": raw}
        )
        assert (status, body["error"]) == (400, "invalidValue"), (raw, status, body)


async def test_errors_are_not_cached(api: Api) -> None:
    status, _, resp = await api.call("GET", "/api/queues", key="not-a-key")
    assert status == 401
    assert resp.headers.get("Cache-Control") == "no-store"
    status, _, resp = await api.call("GET", "/api/queues/nope", "reader")
    assert status == 404
    assert resp.headers.get("Cache-Control") == "no-store"


async def test_redrive_into_itself_is_refused(api: Api, queues: Queues) -> None:
    # With 1000+ messages a self-redrive looped forever (each step moved a full step back
    # into the same queue); with fewer it "moved" them in place.
    await queues.create_queue("dlq")
    await queues.send_messages("dlq", [f"m{i}" for i in range(5)])
    status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json={"to": "dlq"})
    assert (status, body["error"]) == (400, "invalidValue"), body
    assert (await queues.get_queue_attributes("dlq")).msgs == 5


async def test_redrive_all_stops_at_what_was_there(
    queues: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "All" means the messages in the dead-letter queue when the redrive starts: a producer
    # refilling it as fast as it drains cannot keep one request running forever. The producer
    # here sends a step's worth of messages after every redrive step (five times at most, so
    # the old behaviour ends too, with too many moved).
    from wsmq.queue import admin as admin_module

    await queues.create_queue("src")
    await queues.create_queue("dlq")
    step = admin_module.REDRIVE_STEP
    await queues.send_messages("dlq", [f"m{i}" for i in range(step)])
    await queues.send_messages("dlq", [f"m{i}" for i in range(10)])
    real = run_script
    refills = 0

    async def run_then_refill(redis: Any, name: str, keys: Any, args: Any) -> Any:
        nonlocal refills
        result = await real(redis, name, keys, args)
        if name == "redrive" and refills < 5:
            refills += 1
            await queues.send_messages("dlq", [f"n{i}" for i in range(step)])
        return result

    monkeypatch.setattr(admin_module, "run_script", run_then_refill)
    async with asyncio.timeout(20):
        moved = await admin_module.QueueAdmin(queues).redrive("dlq", "src")
    assert moved == step + 10
    assert (await queues.get_queue_attributes("src")).msgs == step + 10


async def test_purge_stops_at_what_was_there(
    queues: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsmq.queue import admin as admin_module

    await queues.create_queue("q")
    step = admin_module.REDRIVE_STEP
    await queues.send_messages("q", [f"m{i}" for i in range(step)])
    await queues.send_messages("q", [f"m{i}" for i in range(10)])
    real = run_script
    refills = 0

    async def run_then_refill(redis: Any, name: str, keys: Any, args: Any) -> Any:
        nonlocal refills
        result = await real(redis, name, keys, args)
        if name == "purge" and refills < 5:
            refills += 1
            await queues.send_messages("q", [f"n{i}" for i in range(step)])
        return result

    monkeypatch.setattr(admin_module, "run_script", run_then_refill)
    async with asyncio.timeout(20):
        purged = await admin_module.QueueAdmin(queues).purge("q")
    assert purged == step + 10


async def test_redrive_of_an_empty_dlq_still_checks_the_target(api: Api, queues: Queues) -> None:
    await queues.create_queue("dlq")
    status, body, _ = await api.call(
        "POST", "/api/queues/dlq/redrive", "admin", json={"to": "missing"}
    )
    assert (status, body["error"]) == (404, "queueNotFound"), body


async def test_idempotency_keys_are_per_api_key(api: Api, queues: Queues) -> None:
    # Two API keys choosing the same Idempotency-Key must not see each other's requests: no
    # replay of the other's ids, no 422 for a different body.
    await queues.create_queue("q1")
    headers = {"Idempotency-Key": "order-1"}
    first = await api.call(
        "POST", "/api/queues/q1/messages", "publisher", json={"message": "a"}, headers=headers
    )
    assert first[0] == 201
    same_body = await api.call(
        "POST", "/api/queues/q1/messages", "all", json={"message": "a"}, headers=headers
    )
    assert same_body[0] == 201, same_body[1]
    assert same_body[1]["ids"] != first[1]["ids"]
    other_body = await api.call(
        "POST",
        "/api/queues/q1/messages",
        "all",
        json={"message": "b"},
        headers={"Idempotency-Key": "order-2"},
    )
    assert other_body[0] == 201
    guessed = await api.call(
        "POST",
        "/api/queues/q1/messages",
        "publisher",
        json={"message": "c"},
        headers={"Idempotency-Key": "order-2"},
    )
    assert guessed[0] == 201, guessed[1]
    # the owner still replays its own
    again = await api.call(
        "POST", "/api/queues/q1/messages", "publisher", json={"message": "a"}, headers=headers
    )
    assert again[0] == 200 and again[1]["ids"] == first[1]["ids"]
    assert (await queues.get_queue_attributes("q1")).msgs == 4


async def test_peek_at_huge_messages_moves_only_their_heads(
    api: Api, queues: Queues, redis_url: str
) -> None:
    # A queue without maxsize (-1) may hold messages of many megabytes: a peek of 100 used to
    # copy every body whole from Redis into the node (and its JSON) to show 1024 characters.
    import redis.asyncio as aioredis

    await queues.create_queue("big", maxsize=-1)
    huge = "é" * 1_000_000  # 2 MB of UTF-8
    for _ in range(10):
        await queues.send_message("big", huge)
    await queues.send_message("big", "small")
    probe = aioredis.from_url(redis_url)
    try:
        before = (await probe.info("stats"))["total_net_output_bytes"]
        status, body, _ = await api.call(
            "GET", "/api/queues/big/messages", "reader", params={"peek": "100"}
        )
        after = (await probe.info("stats"))["total_net_output_bytes"]
    finally:
        await probe.aclose()
    assert status == 200
    msgs = body["messages"]
    assert len(msgs) == 11
    assert msgs[0]["message"] == "é" * 1024 and msgs[0]["truncated"] is True
    assert msgs[0]["size"] == 2_000_000 and msgs[0]["length"] is None
    assert msgs[-1] == {**msgs[-1], "message": "small", "truncated": False, "length": 5, "size": 5}
    assert after - before < 4_000_000  # was over 20 MB: every body whole


async def test_revoke_refuses_ids_no_user_can_have(api: Api) -> None:
    for bad in ("%00", "a" * 129, "a%20b", "%E2%80%AE"):
        status, body, _ = await api.call("POST", f"/api/users/{bad}/revoke", "admin")
        assert (status, body["error"]) == (400, "invalid_user_id"), (bad, body)
        assert len(body["message"]) < 100  # the id is not echoed


async def test_a_bad_dead_letter_queue_name_is_named_as_such(api: Api, queues: Queues) -> None:
    # It said "Invalid queue name 'jobs'": the queue of the URL, which is fine.
    for method in ("PUT", "PATCH"):
        if method == "PATCH":
            await queues.create_queue("jobs")
        status, body, _ = await api.call(
            method, "/api/queues/jobs", "admin",
            json={"deadLetterQueue": "bad name!", "maxReceiveCount": 1},
        )  # fmt: skip
        assert (status, body["error"]) == (400, "invalidFormat"), body
        assert "deadLetterQueue" in body["message"] and "queue name 'jobs'" not in body["message"]


async def test_a_redis_outage_is_logged_once_not_per_request(
    api: Api, redis_proc: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # A client retrying in a loop during an outage wrote one warning per request.
    status, _, _ = await api.call("GET", "/api/queues", "reader")
    assert status == 200
    caplog.set_level(logging.INFO, logger="wsmq.api")
    redis_proc.stop()
    try:
        for _ in range(15):  # a queue's detail: the listing may be served from its 1 s copy
            status, body, _ = await api.call("GET", "/api/queues/jobs", "reader")
            assert (status, body["error"]) == (503, "redis_unavailable")
    finally:
        redis_proc.start()
    warnings = [r for r in caplog.records if r.name == "wsmq.api" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    async with asyncio.timeout(15):
        while (await api.call("GET", "/api/queues", "reader"))[0] != 200:
            await asyncio.sleep(0.1)  # redis-py reconnects on its own schedule
    assert any(getattr(r, "event", None) == "api.redis_recovered" for r in caplog.records)


async def test_a_broken_user_store_is_a_503_without_its_details(
    api: Api, user_store: FileUserStore, users_file: Path
) -> None:
    # The message carried the users file's path and the parse error to the client.
    (user,) = await make_users(user_store, names=["alice"], secret=SECRET)
    assert (await api.call("GET", "/api/me", "admin"))[0] == 200  # the node read the file
    users_file.write_text('{"users": [')  # a hand edit gone wrong
    status, body, _ = await api.call("POST", f"/api/users/{user.user_id}/revoke", "admin")
    assert (status, body["error"]) == (503, "unavailable"), body
    assert str(users_file.parent) not in body["message"] and "JSON" not in body["message"]


async def test_a_refused_idempotency_key_creates_no_queue(api: Api, queues: Queues) -> None:
    status, body, _ = await api.call(
        "POST", "/api/queues/fresh/messages", "publisher", json={"message": "x"},
        params={"create": "true"}, headers={"Idempotency-Key": "k" * 256},
    )  # fmt: skip
    assert (status, body["error"]) == (400, "bad_request")
    assert not await queues.queue_exists("fresh")


async def test_publish_refuses_unknown_fields(api: Api, queues: Queues) -> None:
    # {"message": "x", "dealy": 60} sent the message at once: the typo was ignored.
    await queues.create_queue("q1")
    for payload in (
        {"message": "x", "dealy": 60},
        {"messages": [{"message": "x", "dealy": 60}]},
        {"messages": [{"message": "x"}], "message": "y"},
        {"messages": [{"message": "x"}], "delay": 5},
    ):
        status, body, _ = await api.call("POST", "/api/queues/q1/messages", json=payload)
        assert (status, body["error"]) == (400, "bad_request"), (payload, body)
    assert (await queues.get_queue_attributes("q1")).msgs == 0
    status, body, _ = await api.call(
        "POST", "/api/queues/q1/messages", json={"x" * 10_000: 1, "message": "x"}
    )
    assert status == 400 and len(body["message"]) < 200  # a huge field name is not echoed
    await queues.create_queue("dlq")
    for path in ("/api/queues/q1", "/api/queues/dlq/redrive"):
        method = "PATCH" if path == "/api/queues/q1" else "POST"
        status, body, _ = await api.call(method, path, json={"x" * 10_000: 1})
        assert (status, body["error"]) == (400, "bad_request")
        assert len(body["message"]) < 200, body


async def test_a_trickled_body_gets_408_within_the_body_deadline(
    start_node: StartNode, keys: dict[str, str], http: aiohttp.ClientSession, queues: Queues
) -> None:
    """A key holder sending its body a byte at a time cannot hold a connection: after
    ``api_body_timeout`` (in all, not per chunk) the answer is 408 ``body_timeout``."""
    node = await start_node(api_body_timeout=0.5)
    await queues.create_queue("slow")
    assert node.http_url is not None
    url = urlsplit(node.http_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    body = b'{"message": "' + b"x" * 200 + b'"}'
    writer.write(
        b"POST /api/queues/slow/messages HTTP/1.1\r\n"
        b"Host: localhost\r\n"
        + f"Authorization: Bearer {keys['publisher']}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def trickle() -> None:
        for byte in body:  # 200+ bytes at 20 a second: 10 s, far beyond the deadline
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":", 1)[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            answer = json.loads(await reader.readexactly(length))
        elapsed = loop.time() - started
    finally:
        sender.cancel()
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 ")
    assert answer["error"] == "body_timeout"
    assert 0.4 <= elapsed < 3
    assert (await queues.get_queue_attributes("slow")).totalsent == 0
    async with http.get(f"{node.http_url}/metrics") as resp:
        text = await resp.text()
    assert 'wsmq_api_requests_total{operation="publish",status="408"} 1.0' in text

"""Admin endpoints: create, update, delete, purge, redrive, revoke a user."""

from __future__ import annotations

import asyncio

import aiohttp

from wsmq.auth import FileUserStore
from wsmq.gateway import Gateway
from wsmq.queue import Queues
from wsmq.testing.users import make_users

from .conftest import SECRET, Api, StartNode


async def test_create_update_delete(api: Api, queues: Queues) -> None:
    status, body, _ = await api.call(
        "PUT", "/api/queues/jobs", "admin", json={"vt": 45, "delay": 2, "maxsize": 2048}
    )
    assert status == 201
    assert (body["name"], body["vt"], body["delay"], body["maxsize"]) == ("jobs", 45, 2, 2048)
    attrs = await queues.get_queue_attributes("jobs")
    assert (attrs.vt, attrs.delay, attrs.maxsize) == (45, 2, 2048)
    status, body, _ = await api.call("PUT", "/api/queues/jobs", "admin", json={})
    assert (status, body["error"]) == (409, "queueExists")
    status, body, _ = await api.call("PUT", "/api/queues/other", "admin", json={"vt": -1})
    assert (status, body["error"]) == (400, "invalidValue")
    status, body, _ = await api.call("PUT", "/api/queues/other", "admin", json={"vtt": 1})
    assert (status, body["error"]) == (400, "bad_request")
    status, body, _ = await api.call("PUT", "/api/queues/other", "admin", json={"vt": True})
    assert (status, body["error"]) == (400, "invalidValue")
    assert not await queues.queue_exists("other")

    # A missing dead-letter queue is a bad setting of the queue named in the URL, not that
    # queue missing.
    status, body, _ = await api.call(
        "PUT", "/api/queues/fresh", "admin", json={"maxReceiveCount": 2, "deadLetterQueue": "nodlq"}
    )
    assert status == 400 and "fresh" not in body["message"], body
    assert not await queues.queue_exists("fresh")
    await queues.create_queue("dlq")
    status, body, _ = await api.call(
        "PATCH", "/api/queues/jobs", "admin",
        json={"vt": 5, "maxReceiveCount": 2, "deadLetterQueue": "dlq", "messageTtl": 60},
    )  # fmt: skip
    assert status == 200
    assert body["vt"] == 5 and body["maxReceiveCount"] == 2 and body["messageTtl"] == 60
    assert body["deadLetterQueue"] == {"name": "dlq", "depth": 0}
    status, body, _ = await api.call("PATCH", "/api/queues/jobs", "admin", json={})
    assert (status, body["error"]) == (400, "noAttributeSupplied")
    status, body, _ = await api.call("PATCH", "/api/queues/nope", "admin", json={"vt": 1})
    assert (status, body["error"]) == (404, "queueNotFound")

    await queues.send_message("jobs", "x")
    status, body, _ = await api.call("DELETE", "/api/queues/jobs", "admin")
    assert (status, body["error"]) == (400, "confirm_required")
    status, body, _ = await api.call(
        "DELETE", "/api/queues/jobs", "admin", params={"confirm": "job"}
    )
    assert status == 400
    assert await queues.queue_exists("jobs")
    status, body, _ = await api.call(
        "DELETE", "/api/queues/jobs", "admin", params={"confirm": "jobs"}
    )
    assert (status, body) == (200, {"deleted": "jobs"})
    assert not await queues.queue_exists("jobs")
    status, body, _ = await api.call(
        "DELETE", "/api/queues/jobs", "admin", params={"confirm": "jobs"}
    )
    assert (status, body["error"]) == (404, "queueNotFound")


async def test_purge_keeps_queue_and_counters(api: Api, queues: Queues) -> None:
    await queues.create_queue("q1", vt=77)
    await queues.create_queue("q2")
    for start in (0, 1000):
        await queues.send_messages("q1", [f"m{i}" for i in range(start, start + 750)])
    await queues.send_message("q2", "stays")
    status, body, _ = await api.call("POST", "/api/queues/q1/purge", "admin")
    assert (status, body["error"]) == (400, "confirm_required")
    status, body, _ = await api.call(
        "POST", "/api/queues/q1/purge", "admin", params={"confirm": "q1"}
    )
    assert (status, body) == (200, {"queue": "q1", "purged": 1500})
    attrs = await queues.get_queue_attributes("q1")
    assert (attrs.msgs, attrs.vt, attrs.totalsent) == (0, 77, 1500)
    fields = [str(f) for f in await queues.redis.hkeys(queues.keys.attributes("q1"))]
    assert all(":" not in f or f.startswith("wsmq:") for f in fields)  # no message left over
    assert (await queues.get_queue_attributes("q2")).msgs == 1
    status, body, _ = await api.call(
        "POST", "/api/queues/none/purge", "admin", params={"confirm": "none"}
    )
    assert (status, body["error"]) == (404, "queueNotFound")


async def _dead_letter(queues: Queues, qname: str, bodies: list[str]) -> list[str]:
    """Send ``bodies`` to ``qname`` (max receive count 1) and push them into its DLQ."""
    ids = await queues.send_messages(qname, bodies)
    got = await queues.receive_messages(qname, len(bodies), vt=0)
    assert len(got) == len(bodies)
    assert await queues.receive_messages(qname, len(bodies)) == []  # now moved
    return ids


async def test_redrive_moves_exactly_the_dlq_messages(api: Api, queues: Queues) -> None:
    await queues.create_queue("dlq")
    await queues.create_queue("work", max_receive_count=1, dead_letter_queue="dlq")
    dead = await _dead_letter(queues, "work", [f"dead{i}" for i in range(5)])
    assert (await queues.get_queue_attributes("dlq")).msgs == 5
    live = await queues.send_messages("work", ["live0", "live1"])

    status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json={"count": 2})
    assert (status, body) == (200, {"queue": "dlq", "to": "work", "moved": 2})
    status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json={})
    assert (status, body["moved"]) == (200, 3)
    assert (await queues.get_queue_attributes("dlq")).msgs == 0
    in_work = {str(i) for i in await queues.redis.zrange(queues.keys.messages("work"), 0, -1)}
    assert in_work == set(dead) | set(live)
    got = await queues.receive_messages("work", 10)
    by_id = {m.id: m for m in got}
    assert {by_id[i].message for i in dead} == {f"dead{i}" for i in range(5)}
    assert all(by_id[i].rc == 1 for i in dead)  # the receive count started again
    status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json={})
    assert (status, body["moved"]) == (200, 0)


async def test_redrive_target_rules(api: Api, queues: Queues) -> None:
    await queues.create_queue("dlq")
    await queues.create_queue("a", max_receive_count=1, dead_letter_queue="dlq")
    await queues.create_queue("b", max_receive_count=1, dead_letter_queue="dlq")
    await queues.create_queue("lonely")
    status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json={})
    assert (status, body["error"]) == (400, "redrive_target_required")
    assert "a, b" in body["message"]
    await _dead_letter(queues, "b", ["x"])
    status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json={"to": "b"})
    assert (status, body["moved"]) == (200, 1)
    status, body, _ = await api.call("POST", "/api/queues/lonely/redrive", "admin", json={})
    assert (status, body["error"]) == (400, "redrive_target_required")
    for payload, code in (
        ({"count": 0}, "invalidValue"),
        ({"count": "all"}, "invalidValue"),
        ({"to": 5}, "invalidFormat"),
        ({"to": "missing"}, "queueNotFound"),
        ({"extra": 1}, "bad_request"),
    ):
        status, body, _ = await api.call("POST", "/api/queues/dlq/redrive", "admin", json=payload)
        assert body["error"] == code, (payload, body)
    status, body, _ = await api.call("POST", "/api/queues/nodlq/redrive", "admin", json={"to": "a"})
    assert (status, body["error"]) == (404, "queueNotFound")


async def test_revoke_user_closes_its_sockets_on_every_node(
    api: Api,
    node: Gateway,
    start_node: StartNode,
    user_store: FileUserStore,
    http: aiohttp.ClientSession,
) -> None:
    other = await start_node()
    (user,) = await make_users(user_store, names=["alice"], secret=SECRET)
    sockets = []
    for gw in (node, other):
        assert gw.url is not None
        sockets.append(await http.ws_connect(gw.url, headers=user.headers))
    status, body, _ = await api.call("POST", f"/api/users/{user.user_id}/revoke", "admin")
    assert status == 200
    assert body["userId"] == user.user_id and body["revoked"] is True and body["nodes"] >= 2
    for ws in sockets:
        async with asyncio.timeout(5):
            msg = await ws.receive()
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 4403
    stored = await user_store.get(user.user_id)
    assert stored is not None and stored.access_token_hash is None
    status, body, _ = await api.call("POST", "/api/users/ffffffffffffffffffffffff/revoke", "admin")
    assert (status, body["error"]) == (404, "user_not_found")

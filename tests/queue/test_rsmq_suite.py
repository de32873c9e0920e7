"""RSMQ's own test suite (rsmq 0.12.x ``test/test.js``), ported behaviour by behaviour.

RSMQ's mocha suite runs as one long sequence sharing state; here each group is a test that
replays its steps against a fresh private Redis.  Error checks compare RSMQ's exact
``err.name`` and ``err.message``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from redis.asyncio import Redis

from wsmq.queue import (
    InvalidFormat,
    InvalidValue,
    MessageNotString,
    MessageTooLong,
    MissingParameter,
    NoAttributeSupplied,
    QueueError,
    QueueExists,
    QueueNotFound,
    Queues,
)
from wsmq.queue.ids import ID_RE, sent_ms

Q1, Q2 = "test1", "test2"


async def receive_within(q: Queues, qname: str, seconds: float, vt: int | None = None) -> Any:
    """Poll ``receive_message`` until a message comes (bounded; fails the test on timeout)."""
    async with asyncio.timeout(seconds):
        while True:
            msg = await q.receive_message(qname, vt=vt)
            if msg is not None:
                return msg
            await asyncio.sleep(0.02)


def check(exc: QueueError, cls: type[QueueError], name: str, message: str) -> None:
    assert isinstance(exc, cls)
    assert exc.name == name
    assert exc.message == message
    assert str(exc) == message


# -- setup -----------------------------------------------------------------------------------


async def test_instance_from_url_and_from_existing_client(redis_url: str) -> None:
    from_url = Queues.from_url(redis_url, realtime=True)
    client: Redis = Redis.from_url(redis_url)
    wrapped = Queues(client)
    try:
        await from_url.create_queue("shared")
        assert await wrapped.list_queues() == ["shared"]  # bytes replies are decoded too
        msg_id = await wrapped.send_message("shared", "via wrapped client")
        msg = await from_url.receive_message("shared")
        assert msg is not None and msg.id == msg_id and msg.message == "via wrapped client"
        await wrapped.close()  # does not close a client it did not create
        assert await client.ping()
    finally:
        await from_url.close()
        await client.aclose()


# -- promise API flow ----------------------------------------------------------------------


async def test_promise_api_flow_redelivers_after_vt(queues: Queues) -> None:
    await queues.create_queue("promise", vt=0, maxsize=-1)
    id1 = await queues.send_message("promise", "Hello")
    id2 = await queues.send_message("promise", "World")
    m1 = await queues.receive_message("promise", vt=2)
    m2 = await queues.receive_message("promise", vt=1)
    assert m1 is not None and (m1.id, m1.message) == (id1, "Hello")
    assert m2 is not None and (m2.id, m2.message) == (id2, "World")
    assert await queues.receive_message("promise") is None
    # m2 (vt 1) comes back first, then m1 (vt 2); the queue's own vt is 0, so they stay visible.
    again = await receive_within(queues, "promise", 3.0, vt=5)
    assert again.id == id2 and again.rc == 2 and again.fr == m2.fr
    again = await receive_within(queues, "promise", 3.0, vt=5)
    assert again.id == id1 and again.rc == 2
    await queues.delete_queue("promise")
    assert await queues.list_queues() == []


# -- queues ----------------------------------------------------------------------------------


@pytest.mark.parametrize("qname", ["should throw", "name" + "0123456789" * 16 + "1234"])
async def test_create_queue_rejects_invalid_names(queues: Queues, qname: str) -> None:
    assert qname == "should throw" or len(qname) > 160
    with pytest.raises(InvalidFormat) as err:
        await queues.create_queue(qname)
    check(err.value, InvalidFormat, "invalidFormat", "Invalid qname format")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vt": -20}, "vt must be between 0 and 9999999"),
        ({"vt": "not_a_number"}, "vt must be between 0 and 9999999"),
        ({"vt": 10000000}, "vt must be between 0 and 9999999"),
        ({"delay": -20}, "delay must be between 0 and 9999999"),
        ({"delay": "not_a_number"}, "delay must be between 0 and 9999999"),
        ({"delay": 10000000}, "delay must be between 0 and 9999999"),
        ({"maxsize": -20}, "maxsize must be between 1024 and 65536"),
        ({"maxsize": "not_a_number"}, "maxsize must be between 1024 and 65536"),
        ({"maxsize": 66000}, "maxsize must be between 1024 and 65536"),
        ({"maxsize": 900}, "maxsize must be between 1024 and 65536"),
        ({"maxsize": -2}, "maxsize must be between 1024 and 65536"),
    ],
)
async def test_create_queue_rejects_out_of_range(
    queues: Queues, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidValue) as err:
        await queues.create_queue(Q1, **kwargs)
    check(err.value, InvalidValue, "invalidValue", message)
    assert await queues.list_queues() == []  # nothing written


async def test_create_list_and_exists(queues: Queues) -> None:
    assert await queues.list_queues() == []
    await queues.create_queue(Q1)
    with pytest.raises(QueueExists) as err:
        await queues.create_queue(Q1)
    check(err.value, QueueExists, "queueExists", "Queue exists")
    assert await queues.list_queues() == [Q1]
    await queues.create_queue(Q2, maxsize=2048)
    assert await queues.list_queues() == [Q1, Q2]
    assert await queues.queue_exists(Q2) and not await queues.queue_exists("nope")
    attrs = await queues.get_queue_attributes(Q2)
    assert (attrs.vt, attrs.delay, attrs.maxsize, attrs.msgs) == (30, 0, 2048, 0)


async def test_attributes_of_missing_queue(queues: Queues) -> None:
    with pytest.raises(QueueNotFound) as err:
        await queues.get_queue_attributes("sdfsdfsdf")
    check(err.value, QueueNotFound, "queueNotFound", "Queue not found")


async def test_set_attributes_on_missing_queue(queues: Queues) -> None:
    with pytest.raises(NoAttributeSupplied) as err1:
        await queues.set_queue_attributes("kjdsfh3h")
    check(err1.value, NoAttributeSupplied, "noAttributeSupplied", "No attribute was supplied")
    with pytest.raises(QueueNotFound) as err2:
        await queues.set_queue_attributes("kjdsfh3h", vt=1000)
    check(err2.value, QueueNotFound, "queueNotFound", "Queue not found")


async def test_set_attributes_changes_values_and_modified(queues: Queues, raw: Redis) -> None:
    await queues.create_queue(Q1)
    before = await queues.get_queue_attributes(Q1)
    # Second resolution: push `modified` into the past so the increase is visible at once.
    await raw.hset(f"rsmq:{Q1}:Q", "modified", str(before.modified - 100))
    attrs = await queues.set_queue_attributes(Q1, vt=1234)
    assert attrs.vt == 1234 and attrs.modified >= before.modified > before.modified - 100
    attrs = await queues.set_queue_attributes(Q1, delay=7)
    assert (attrs.vt, attrs.delay) == (1234, 7)
    attrs = await queues.set_queue_attributes(Q1, maxsize=-1)
    assert attrs.maxsize == -1
    attrs = await queues.set_queue_attributes(Q1, maxsize=2048)
    assert attrs.maxsize == 2048
    attrs = await queues.set_queue_attributes(Q1, vt=30, maxsize=65536, delay=0)
    assert (attrs.vt, attrs.delay, attrs.maxsize) == (30, 0, 65536)
    assert attrs.created == before.created
    with pytest.raises(InvalidValue) as err:
        await queues.set_queue_attributes(Q1, maxsize=50)
    check(err.value, InvalidValue, "invalidValue", "maxsize must be between 1024 and 65536")
    with pytest.raises(InvalidValue) as err:
        await queues.set_queue_attributes(Q1, vt=-5)
    check(err.value, InvalidValue, "invalidValue", "vt must be between 0 and 9999999")
    assert (await queues.get_queue_attributes(Q1)).vt == 30  # rejected values not stored


# -- messages --------------------------------------------------------------------------------


async def test_send_validation(queues: Queues) -> None:
    await queues.create_queue(Q1)
    with pytest.raises(QueueNotFound) as err:
        await queues.send_message("rtlbrmpft", "foo")
    check(err.value, QueueNotFound, "queueNotFound", "Queue not found")
    with pytest.raises(MissingParameter) as err2:
        await queues.send_message("", "foo")
    check(err2.value, MissingParameter, "missingParameter", "No qname supplied")
    for bad in (None, 123):
        with pytest.raises(MessageNotString) as err3:
            await queues.send_message(Q1, bad)  # type: ignore[arg-type]
        check(err3.value, MessageNotString, "messageNotString", "Message must be a string")
    assert (await queues.get_queue_attributes(Q1)).totalsent == 0


async def test_thousand_unique_ids(queues: Queues) -> None:
    await queues.create_queue(Q2)
    ids = await asyncio.gather(
        *(queues.send_message(Q2, f"test message number:{i}") for i in range(1000))
    )
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and ID_RE.match(i) for i in ids)


async def test_message_flow(queues: Queues) -> None:
    """Receive order, counters, pop, change visibility and delete, as RSMQ's suite does."""
    await queues.create_queue(Q1)
    m1 = await queues.send_message(Q1, "Hello")
    m2 = await queues.send_message(Q1, "World")
    r1 = await queues.receive_message(Q1)
    r2 = await queues.receive_message(Q1)
    assert r1 is not None and (r1.id, r1.message, r1.rc) == (m1, "Hello", 1)
    assert r2 is not None and (r2.id, r2.message, r2.rc) == (m2, "World", 1)
    attrs = await queues.get_queue_attributes(Q1)
    assert (attrs.msgs, attrs.hiddenmsgs, attrs.totalrecv) == (2, 2, 2)
    m3 = await queues.send_message(Q1, "Another World")
    attrs = await queues.get_queue_attributes(Q1)
    assert (attrs.msgs, attrs.totalrecv, attrs.totalsent) == (3, 2, 3)
    popped = await queues.pop_message(Q1)
    assert popped is not None and (popped.id, popped.message, popped.rc) == (m3, "Another World", 1)
    attrs = await queues.get_queue_attributes(Q1)
    assert (attrs.msgs, attrs.totalrecv) == (2, 3)
    assert await queues.pop_message(Q1) is None

    # change visibility
    fake_id = "abcdefghij0123456789abcdefghij01"
    assert await queues.change_message_visibility(Q1, fake_id, 10) is False
    assert await queues.change_message_visibility(Q1, m2, 10) is True
    assert await queues.receive_message(Q1) is None
    assert await queues.change_message_visibility(Q1, m2, 0) is True
    again = await queues.receive_message(Q1)
    assert again is not None and (again.id, again.rc) == (m2, 2)
    assert await queues.receive_message(Q1) is None

    # delete
    with pytest.raises(MissingParameter) as err:
        await queues.delete_message(Q1, "")
    check(err.value, MissingParameter, "missingParameter", "No id supplied")
    with pytest.raises(InvalidFormat) as err2:
        await queues.delete_message(Q1, "sdafsdf")
    check(err2.value, InvalidFormat, "invalidFormat", "Invalid id format")
    assert await queues.delete_message(Q1, m1) is True
    assert await queues.delete_message(Q1, m1) is False
    assert await queues.change_message_visibility(Q1, m1, 10) is False


async def test_message_too_long(queues: Queues) -> None:
    await queues.create_queue(Q1)
    text = json.dumps(list(range(15001)))  # RSMQ's oversized message, > 65536 chars
    with pytest.raises(MessageTooLong) as err:
        await queues.send_message(Q1, text)
    check(err.value, MessageTooLong, "messageTooLong", "Message too long")
    assert (await queues.get_queue_attributes(Q1)).msgs == 0


async def test_thousand_receives_then_deletes(queues: Queues) -> None:
    await queues.create_queue(Q2)
    sent = await asyncio.gather(
        *(queues.send_message(Q2, f"test message number:{i}") for i in range(1000))
    )
    ids = {msg_id: i for i, msg_id in enumerate(sent)}
    # A vt=0 receive gives the message the score "now" (ms); a message sent in that same ms ties
    # with it and sorts after it (ids begin with the send time), so the received one would be
    # received again in its place. Start once the server's clock has left the last send's ms.
    last_sent = max(int(sent_ms(msg_id)) for msg_id in sent)
    async with asyncio.timeout(5):
        while True:
            sec, usec = await queues.redis.time()
            if sec * 1000 + usec // 1000 > last_sent:
                break
    received = [await queues.receive_message(Q2, vt=0) for _ in range(1000)]
    assert all(m is not None for m in received)
    even = [m.id for m in received if m is not None and int(m.message.split(":")[1]) % 2 == 0]
    assert len(even) == 500
    assert await queues.delete_messages(Q2, even) == 500
    rest = [await queues.receive_message(Q2, vt=0) for _ in range(500)]
    odd = {m.id for m in rest if m is not None}
    assert odd == {i for i, n in ids.items() if n % 2 == 1}
    assert await queues.delete_messages(Q2, list(odd)) == 500
    assert await queues.receive_message(Q2) is None
    attrs = await queues.get_queue_attributes(Q2)
    assert (attrs.totalrecv, attrs.totalsent, attrs.msgs) == (1500, 1000, 0)


async def test_unlimited_maxsize_takes_big_message(queues: Queues) -> None:
    await queues.create_queue(Q1)
    await queues.set_queue_attributes(Q1, maxsize=-1)
    text = json.dumps(list(range(15001)))
    assert len(text) > 65536
    msg_id = await queues.send_message(Q1, text)
    msg = await queues.receive_message(Q1)
    assert msg is not None and (msg.id, msg.message) == (msg_id, text)


async def test_realtime_publishes_queue_size(redis_url: str, raw: Redis) -> None:
    quiet = Queues.from_url(redis_url)
    loud = Queues.from_url(redis_url, realtime=True)
    pubsub = raw.pubsub()
    try:
        await quiet.create_queue(Q1)
        await quiet.send_message(Q1, "before subscribing")
        await pubsub.subscribe(loud.realtime_channel(Q1))
        assert loud.realtime_channel(Q1) == f"rsmq:rt:{Q1}"
        await loud.send_message(Q1, "Hello")
        await loud.send_message(Q1, "World")
        got: list[str] = []
        async with asyncio.timeout(5):
            while len(got) < 2:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    got.append(msg["data"])
        assert got == ["2", "3"]
        await quiet.send_message(Q1, "no realtime")  # realtime off: nothing published
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2) is None
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        await quiet.close()
        await loud.close()

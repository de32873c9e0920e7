"""wsmq extensions beyond RSMQ: batch receive, dead-letter queue, message TTL, helpers."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from wsmq.queue import (
    DeadLetterQueueNotFound,
    InvalidFormat,
    InvalidValue,
    MessageNotString,
    MessageTooLong,
    Queues,
)
from wsmq.queue.ids import make_id


async def redis_time(raw: Redis) -> tuple[int, int]:
    sec, usec = await raw.time()
    return int(sec), int(usec)


async def test_receive_messages_batch_in_order(queues: Queues) -> None:
    await queues.create_queue("b")
    ids = [await queues.send_message("b", f"m{i}") for i in range(7)]
    first = await queues.receive_messages("b", 5, vt=30)
    assert [m.id for m in first] == ids[:5]
    assert [m.message for m in first] == [f"m{i}" for i in range(5)]
    assert all(m.rc == 1 for m in first)
    rest = await queues.receive_messages("b", 5)
    assert [m.id for m in rest] == ids[5:]
    assert await queues.receive_messages("b", 5) == []
    attrs = await queues.get_queue_attributes("b")
    assert (attrs.totalrecv, attrs.hiddenmsgs) == (7, 7)


async def test_receive_of_a_full_batch_writes_every_field(queues: Queues, raw: Redis) -> None:
    # 1000 messages in one receive: the script writes scores and counters in chunks.
    await queues.create_queue("big")
    ids = await queues.send_messages("big", [f"m{i}" for i in range(1000)])
    first = await queues.receive_messages("big", 1000, vt=0)
    assert [m.id for m in first] == ids and all(m.rc == 1 for m in first)
    fr = {m.id: m.fr for m in first}
    again = await queues.receive_messages("big", 1000, vt=60)
    assert sorted(m.id for m in again) == sorted(ids)
    assert all(m.rc == 2 and m.fr == fr[m.id] for m in again)  # first receive time kept
    attrs = await queues.get_queue_attributes("big")
    assert (attrs.totalrecv, attrs.hiddenmsgs) == (2000, 1000)
    stored = await raw.hmget("rsmq:big:Q", [f"{ids[999]}:rc", f"{ids[999]}:fr"])
    assert stored == ["2", str(fr[ids[999]])]


async def test_receive_messages_with_vt_zero_returns_each_once(queues: Queues) -> None:
    await queues.create_queue("z")
    ids = [await queues.send_message("z", str(i)) for i in range(3)]
    got = await queues.receive_messages("z", 10, vt=0)
    assert sorted(m.id for m in got) == sorted(ids)  # no duplicates although still visible


async def test_receive_messages_count_validation(queues: Queues) -> None:
    await queues.create_queue("c")
    for bad in (0, 1001, "x"):
        with pytest.raises(InvalidValue, match=r"^count must be between 1 and 1000$"):
            await queues.receive_messages("c", bad)  # type: ignore[arg-type]


async def test_batch_delete_and_change_visibility(queues: Queues) -> None:
    await queues.create_queue("d")
    ids = [await queues.send_message("d", str(i)) for i in range(4)]
    got = await queues.receive_messages("d", 4, vt=60)
    assert len(got) == 4 and await queues.receive_message("d") is None
    assert await queues.change_messages_visibility("d", ids[:3], 0) == 3
    assert await queues.visible_counts(["d"]) == {"d": 3}
    assert await queues.delete_messages("d", [*ids[:2], ids[0]]) == 2
    assert await queues.delete_messages("d", []) == 0
    assert await queues.change_messages_visibility("d", [], 0) == 0
    assert (await queues.get_queue_attributes("d")).msgs == 2


async def test_delete_counts_as_rsmq_whatever_state_the_ids_are_in(
    queues: Queues, raw: Redis
) -> None:
    # RSMQ counts an id when it was in the zset and had hash fields. The script deletes ids
    # with a receive count in bulk and the others one by one: the count must not tell.
    await queues.create_queue("mx")
    z, h = "rsmq:mx", "rsmq:mx:Q"
    a, b, c, d, f = await queues.send_messages("mx", list("abcdf"))
    await queues.receive_messages("mx", 3, vt=60)  # a, b, c have a receive count
    await raw.zrem(z, c)  # c: hash fields only
    await raw.hdel(h, d)  # d: in the zset, no fields: not counted
    await raw.hset(h, f"{f}:rc", "1")  # f: never received, yet a receive count (RSMQ's shape)
    await raw.hdel(h, f)  # ... and no body: counts (a field left)
    missing = make_id(1_700_000_000, 0, "x" * 22)
    ids = [a, b, c, d, f, missing, a, b, d]
    assert await queues.delete_messages("mx", ids) == 3  # a, b, f
    assert await raw.zcard(z) == 0
    fields = [str(k) for k in await raw.hkeys(h)]
    assert not [k for k in fields if k.split(":")[0] in {a, b, c, d, f}]


async def test_delete_of_more_than_a_chunk_counts_each_id_once(queues: Queues) -> None:
    await queues.create_queue("dc")
    ids = await queues.send_messages("dc", [str(i) for i in range(1000)])
    ids += await queues.send_messages("dc", [str(i) for i in range(300)])
    got = await queues.receive_messages("dc", 1000, vt=60)
    assert len(got) == 1000  # 300 never received
    # ids[0] again after the first chunk of 500: gone by then, not counted twice
    assert await queues.delete_messages("dc", [*ids[:700], ids[0], *ids[700:]]) == 1300
    assert (await queues.get_queue_attributes("dc")).msgs == 0


async def test_visible_counts_and_next_visible_at(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("v1")
    await queues.create_queue("v2")
    assert await queues.next_visible_at("v1") is None
    await queues.send_message("v1", "now")
    await queues.send_message("v1", "later", delay=100)
    await queues.send_message("v2", "later", delay=50)
    counts = await queues.visible_counts(["v1", "v2", "missing"])
    assert counts == {"v1": 1, "v2": 0, "missing": 0}
    assert await queues.visible_counts([]) == {}
    sec, usec = await redis_time(raw)
    now_ms = sec * 1000 + usec // 1000
    at = await queues.next_visible_at("v2")
    assert at is not None and now_ms + 49_000 <= at <= now_ms + 50_000
    assert 0 <= await queues.now_ms() - now_ms < 5000
    first = await queues.next_visible_at("v1")
    assert first is not None and first <= now_ms


async def test_receive_with_next_reports_the_timer_in_the_same_call(
    queues: Queues, raw: Redis
) -> None:
    await queues.create_queue("rn", vt=30)
    assert await queues.receive_with_next("rn", 10) == ([], None)  # empty queue
    later = await queues.send_message("rn", "later", delay=100)
    ids = await queues.send_messages("rn", ["a", "b", "c"])
    sec, usec = await redis_time(raw)
    now_ms = sec * 1000 + usec // 1000
    # A full batch: more may be visible, so no timer (the caller receives again at once).
    got, nxt = await queues.receive_with_next("rn", 2)
    assert [m.id for m in got] == ids[:2] and nxt is None
    # A partial batch: the earliest score left is what next_visible_at says now.
    got, nxt = await queues.receive_with_next("rn", 5, vt=20)
    assert [m.id for m in got] == ids[2:]
    assert nxt == await queues.next_visible_at("rn")
    assert nxt is not None and now_ms + 19_000 <= nxt <= now_ms + 21_000  # c's new vt
    got, nxt = await queues.receive_with_next("rn", 5)
    assert got == [] and nxt == await queues.next_visible_at("rn")
    await queues.delete_messages("rn", ids)
    got, nxt = await queues.receive_with_next("rn", 5)
    assert got == [] and nxt is not None and nxt >= now_ms + 99_000  # only `later` is left
    assert await queues.delete_message("rn", later)
    with pytest.raises(InvalidValue):
        await queues.receive_with_next("rn", 0)


async def test_dead_letter_after_max_receive_count(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("dlq")
    await queues.create_queue("work", max_receive_count=2, dead_letter_queue="dlq")
    body = "poison ✓ 😀"
    msg_id = await queues.send_message("work", body)
    frs = set()
    for rc in (1, 2):
        msg = await queues.receive_message("work", vt=0)
        assert msg is not None and (msg.id, msg.rc) == (msg_id, rc)
        frs.add(msg.fr)
    assert len(frs) == 1
    fr = frs.pop()
    assert await queues.receive_message("work", vt=0) is None  # third receive: dead-lettered
    assert await raw.zscore("rsmq:work", msg_id) is None
    assert not await raw.hexists("rsmq:work:Q", msg_id)
    assert not await raw.hexists("rsmq:work:Q", f"{msg_id}:rc")
    work = await queues.get_queue_attributes("work")
    assert (work.msgs, work.totalexceeded, work.totalrecv) == (0, 1, 2)
    dead = await queues.receive_message("dlq")
    assert dead is not None
    assert (dead.id, dead.message, dead.rc, dead.fr) == (msg_id, body, 3, fr)
    assert (await queues.get_queue_attributes("dlq")).totalsent == 1


async def test_dead_letter_in_batch_receive_keeps_the_others(queues: Queues) -> None:
    await queues.create_queue("dlq")
    await queues.create_queue("w", max_receive_count=1, dead_letter_queue="dlq")
    old = await queues.send_message("w", "old")
    assert (await queues.receive_message("w", vt=0)) is not None
    new = [await queues.send_message("w", f"new{i}") for i in range(3)]
    got = await queues.receive_messages("w", 10, vt=30)
    assert [m.id for m in got] == new
    dead = await queues.receive_messages("dlq", 10)
    assert [(m.id, m.message) for m in dead] == [(old, "old")]


async def test_max_receive_count_without_dlq_drops(queues: Queues) -> None:
    await queues.create_queue("w", max_receive_count=1)
    await queues.send_message("w", "x")
    assert await queues.receive_message("w", vt=0) is not None
    assert await queues.receive_message("w", vt=0) is None
    attrs = await queues.get_queue_attributes("w")
    assert (attrs.msgs, attrs.totalexceeded) == (0, 1)


async def test_missing_dlq_keeps_delivering(queues: Queues) -> None:
    """A dead-letter queue deleted after configuration never causes a message loss."""
    await queues.create_queue("dlq")
    await queues.create_queue("w", max_receive_count=1, dead_letter_queue="dlq")
    msg_id = await queues.send_message("w", "x")
    await queues.delete_queue("dlq")
    for rc in (1, 2, 3):
        msg = await queues.receive_message("w", vt=0)
        assert msg is not None and (msg.id, msg.rc) == (msg_id, rc)


async def test_dlq_configured_by_another_instance(redis_url: str, queues: Queues) -> None:
    """A cached 'no DLQ' assumption is corrected by the script, not trusted."""
    await queues.create_queue("dlq")
    await queues.create_queue("w")
    await queues.send_message("w", "x")
    assert await queues.receive_message("w", vt=0) is not None  # caches: no DLQ
    other = Queues.from_url(redis_url)
    try:
        await other.set_queue_attributes("w", max_receive_count=1, dead_letter_queue="dlq")
    finally:
        await other.close()
    assert await queues.receive_message("w", vt=0) is None
    assert (await queues.get_queue_attributes("dlq")).msgs == 1


async def test_dlq_realtime_notification(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("dlq")
    await queues.create_queue("w", max_receive_count=1, dead_letter_queue="dlq")
    await queues.send_message("w", "x")
    await queues.receive_message("w", vt=0)
    pubsub = raw.pubsub()
    await pubsub.subscribe("rsmq:rt:dlq")
    try:
        assert await queues.receive_message("w", vt=0) is None
        async with asyncio.timeout(5):
            while (msg := await pubsub.get_message(True, timeout=1.0)) is None:
                pass
        assert msg["data"] == "1"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]


async def test_extra_settings_validation_and_clearing(queues: Queues, raw: Redis) -> None:
    with pytest.raises(DeadLetterQueueNotFound) as err:
        await queues.create_queue("w", max_receive_count=3, dead_letter_queue="nope")
    assert err.value.name == "queueNotFound"
    assert not await queues.queue_exists("w")
    with pytest.raises(InvalidValue, match="must differ"):
        await queues.create_queue("w", dead_letter_queue="w")
    with pytest.raises(InvalidFormat, match=r"^Invalid dead_letter_queue format$"):
        await queues.create_queue("w", dead_letter_queue="bad name")
    with pytest.raises(InvalidValue, match=r"^max_receive_count must be between 0 and 9999999$"):
        await queues.create_queue("w", max_receive_count=-1)
    with pytest.raises(InvalidValue, match=r"^message_ttl must be between 0 and 9999999$"):
        await queues.create_queue("w", message_ttl="soon")  # type: ignore[arg-type]

    await queues.create_queue("dlq")
    await queues.create_queue("w", max_receive_count=3, dead_letter_queue="dlq", message_ttl=60)
    attrs = await queues.get_queue_attributes("w")
    assert (attrs.max_receive_count, attrs.dead_letter_queue, attrs.message_ttl) == (3, "dlq", 60)
    stored = await raw.hgetall("rsmq:w:Q")
    assert {k: stored[k] for k in ("wsmq:maxrc", "wsmq:dlq", "wsmq:ttl")} == {
        "wsmq:maxrc": "3",
        "wsmq:dlq": "dlq",
        "wsmq:ttl": "60",
    }
    with pytest.raises(DeadLetterQueueNotFound):
        await queues.set_queue_attributes("w", dead_letter_queue="gone")
    attrs = await queues.set_queue_attributes(
        "w", max_receive_count=0, dead_letter_queue="", message_ttl=0
    )
    assert (attrs.max_receive_count, attrs.dead_letter_queue, attrs.message_ttl) == (
        None,
        None,
        None,
    )
    assert not {"wsmq:maxrc", "wsmq:dlq", "wsmq:ttl"} & set(await raw.hkeys("rsmq:w:Q"))
    assert attrs.to_dict()["vt"] == 30


async def plant_message(raw: Redis, qname: str, body: str, age_s: int) -> str:
    """Store a message exactly as RSMQ would have when sending it ``age_s`` seconds ago."""
    sec, usec = await redis_time(raw)
    msg_id = make_id(sec - age_s, usec)
    await raw.zadd(f"rsmq:{qname}", {msg_id: (sec - age_s) * 1000 + usec // 1000})
    await raw.hset(f"rsmq:{qname}:Q", msg_id, body)
    await raw.hincrby(f"rsmq:{qname}:Q", "totalsent", 1)
    return msg_id


async def test_message_ttl_drops_expired(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("t", message_ttl=60)
    old = await plant_message(raw, "t", "stale", age_s=120)
    young = await plant_message(raw, "t", "recent", age_s=30)
    fresh = await queues.send_message("t", "fresh")
    got = await queues.receive_messages("t", 10)
    assert [m.id for m in got] == [young, fresh]
    assert not await raw.hexists("rsmq:t:Q", old)
    assert await raw.zscore("rsmq:t", old) is None
    attrs = await queues.get_queue_attributes("t")
    assert (attrs.totalexpired, attrs.msgs) == (1, 2)


async def test_message_ttl_set_later_and_pop(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("t")
    await plant_message(raw, "t", "stale", age_s=20)
    keep = await queues.send_message("t", "fresh")
    await queues.set_queue_attributes("t", message_ttl=10)
    popped = await queues.pop_message("t")
    assert popped is not None and popped.id == keep
    assert (await queues.get_queue_attributes("t")).msgs == 0


async def test_ensure_queue(queues: Queues) -> None:
    assert await queues.ensure_queue("e", vt=5) is True
    assert await queues.ensure_queue("e", vt=9) is False
    assert (await queues.get_queue_attributes("e")).vt == 5


async def test_send_messages_batch(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("sb", maxsize=1024)
    pubsub = raw.pubsub()
    await pubsub.subscribe("rsmq:rt:sb")
    try:
        bodies = [f"m{i}" for i in range(50)]
        ids = await queues.send_messages("sb", bodies)
        assert len(set(ids)) == 50 and ids == sorted(ids)  # FIFO even within one µs
        got = await queues.receive_messages("sb", 100)
        assert [(m.id, m.message) for m in got] == list(zip(ids, bodies, strict=True))
        async with asyncio.timeout(5):
            while (msg := await pubsub.get_message(True, timeout=1.0)) is None:
                pass
        assert msg["data"] == "50"  # one notification for the batch
        assert await pubsub.get_message(True, timeout=0.1) is None
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
    with pytest.raises(MessageTooLong):
        await queues.send_messages("sb", ["ok", "x" * 1025])
    with pytest.raises(MessageNotString):
        await queues.send_messages("sb", ["ok", 5])  # type: ignore[list-item]
    assert await queues.send_messages("sb", []) == []
    with pytest.raises(InvalidValue) as too_many:
        await queues.send_messages("sb", ["x"] * 1001)
    assert too_many.value.name == "invalidValue"
    attrs = await queues.get_queue_attributes("sb")
    assert (attrs.totalsent, attrs.msgs) == (50, 50)  # failed batches stored nothing
    delayed = await queues.send_messages("sb", ["later"], delay=60)
    assert await queues.receive_messages("sb", 100, vt=0) == []
    assert await queues.change_messages_visibility("sb", delayed, 0) == 1


async def test_concurrent_batch_consumers_never_share_a_message(queues: Queues) -> None:
    await queues.create_queue("cc")
    sent = set(await queues.send_messages("cc", [str(i) for i in range(300)]))

    async def consumer() -> list[str]:
        got: list[str] = []
        while batch := await queues.receive_messages("cc", 7, vt=30):
            got += [m.id for m in batch]
        return got

    async with asyncio.timeout(20):
        results = await asyncio.gather(*(consumer() for _ in range(10)))
    everything = [i for r in results for i in r]
    assert len(everything) == len(set(everything)) == 300
    assert set(everything) == sent


async def test_expired_backlog_is_dropped_in_bounded_steps(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("big", message_ttl=10)
    sec, _ = await redis_time(raw)
    old_ms = (sec - 60) * 1000
    async with raw.pipeline(transaction=False) as pipe:
        for i in range(1100):
            msg_id = make_id(sec - 60, i)
            pipe.zadd("rsmq:big", {msg_id: old_ms})
            pipe.hset("rsmq:big:Q", msg_id, "stale")
        await pipe.execute()
    fresh = await queues.send_message("big", "fresh")
    first = await queues.receive_messages("big", 1)
    expired = (await queues.get_queue_attributes("big")).totalexpired
    assert first == [] and 1000 <= expired <= 1001  # one call does bounded work
    second = await queues.receive_messages("big", 1)
    assert [m.id for m in second] == [fresh]
    attrs = await queues.get_queue_attributes("big")
    assert (attrs.totalexpired, attrs.msgs) == (1100, 1)
    assert set(await raw.hkeys("rsmq:big:Q")) == {
        "vt", "delay", "maxsize", "created", "modified", "wsmq:ttl",
        "totalsent", "totalrecv", "wsmq:totalexpired", fresh, f"{fresh}:rc", f"{fresh}:fr",
    }  # fmt: skip

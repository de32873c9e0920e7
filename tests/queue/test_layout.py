"""The Redis layout, ids and units are exactly RSMQ's (see docs/queue.md)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from wsmq.queue import KeyLayout, MessageTooLong, Queues
from wsmq.queue.ids import ID_RE, sent_ms, to_base36


async def now(raw: Redis) -> tuple[int, int]:
    sec, usec = await raw.time()
    return int(sec), int(sec) * 1000 + int(usec) // 1000


async def test_layout_after_create_send_receive(queues: Queues, raw: Redis) -> None:
    sec0, ms0 = await now(raw)
    await queues.create_queue("lay")
    assert await raw.smembers("rsmq:QUEUES") == {"lay"}
    h = await raw.hgetall("rsmq:lay:Q")
    assert set(h) == {"vt", "delay", "maxsize", "created", "modified"}
    assert (h["vt"], h["delay"], h["maxsize"]) == ("30", "0", "65536")
    assert sec0 <= int(h["created"]) == int(h["modified"]) <= sec0 + 2  # epoch seconds

    msg_id = await queues.send_message("lay", "body")
    _, ms1 = await now(raw)
    assert ID_RE.match(msg_id)
    score = await raw.zscore("rsmq:lay", msg_id)
    assert score is not None and ms0 <= score <= ms1  # epoch ms from Redis TIME
    assert int(msg_id[:10], 36) // 1000 == score  # id time part = same TIME, in µs
    h = await raw.hgetall("rsmq:lay:Q")
    assert (h[msg_id], h["totalsent"]) == ("body", "1")
    assert "totalrecv" not in h

    msg = await queues.receive_message("lay", vt=60)
    _, ms2 = await now(raw)
    assert msg is not None and msg.sent == sent_ms(msg_id) == int(msg_id[:10], 36) / 1000
    score = await raw.zscore("rsmq:lay", msg_id)
    assert score is not None and ms1 + 60_000 <= score <= ms2 + 60_000
    h = await raw.hgetall("rsmq:lay:Q")
    assert (h["totalrecv"], h[f"{msg_id}:rc"]) == ("1", "1")
    assert ms1 <= int(h[f"{msg_id}:fr"]) == msg.fr <= ms2

    await queues.delete_message("lay", msg_id)
    assert set(await raw.hkeys("rsmq:lay:Q")) == {
        "vt", "delay", "maxsize", "created", "modified", "totalsent", "totalrecv",
    }  # fmt: skip
    await queues.delete_queue("lay")
    # Only the send marker is left, and it expires on its own (docs/queue.md).
    assert await raw.keys("*") == [f"rsmq:lay:I:{msg_id[10:]}"]


async def test_delay_units(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("d", delay=5)
    _, ms0 = await now(raw)
    default = await queues.send_message("d", "x")
    explicit = await queues.send_message("d", "y", delay=0)
    _, ms1 = await now(raw)
    s1 = await raw.zscore("rsmq:d", default)
    s2 = await raw.zscore("rsmq:d", explicit)
    assert s1 is not None and ms0 + 5000 <= s1 <= ms1 + 5000
    assert s2 is not None and ms0 <= s2 <= ms1
    got = await queues.receive_message("d")
    assert got is not None and got.id == explicit


async def test_namespace(redis_url: str, raw: Redis) -> None:
    q = Queues.from_url(redis_url, ns="other")
    try:
        await q.create_queue("n")
        msg_id = await q.send_message("n", "x")
        assert sorted(await raw.keys("*")) == [
            "other:QUEUES", "other:n", f"other:n:I:{msg_id[10:]}", "other:n:Q",
        ]  # fmt: skip
        assert q.realtime_channel("n") == "other:rt:n"
    finally:
        await q.close()
    keys = KeyLayout("rsmq")
    assert (keys.queues(), keys.messages("q"), keys.attributes("q"), keys.realtime("q")) == (
        "rsmq:QUEUES",
        "rsmq:q",
        "rsmq:q:Q",
        "rsmq:rt:q",
    )


async def test_maxsize_counts_utf16_code_units(queues: Queues) -> None:
    await queues.create_queue("u", maxsize=1024)
    await queues.send_message("u", "€" * 1024)  # 3072 UTF-8 bytes, 1024 JS chars: fits
    with pytest.raises(MessageTooLong):
        await queues.send_message("u", "😀" * 513)  # 1026 UTF-16 code units
    await queues.send_message("u", "😀" * 512)
    assert (await queues.get_queue_attributes("u")).msgs == 2


async def test_reads_queue_written_by_rsmq_shape(queues: Queues, raw: Redis) -> None:
    """A queue created and filled the way rsmq's MULTI commands do is fully usable."""
    sec, ms = await now(raw)
    await raw.hset(
        "rsmq:legacy:Q",
        mapping={"vt": 30, "delay": 0, "maxsize": 65536, "created": sec, "modified": sec},
    )
    await raw.sadd("rsmq:QUEUES", "legacy")
    msg_id = to_base36(sec * 1_000_000) + "A" * 22
    await raw.zadd("rsmq:legacy", {msg_id: ms})
    await raw.hset("rsmq:legacy:Q", msg_id, "from node")
    await raw.hincrby("rsmq:legacy:Q", "totalsent", 1)
    msg = await queues.receive_message("legacy")
    assert msg is not None and (msg.id, msg.message, msg.rc) == (msg_id, "from node", 1)
    attrs = await queues.get_queue_attributes("legacy")
    assert (attrs.totalsent, attrs.totalrecv, attrs.max_receive_count) == (1, 1, None)


async def test_hiddenmsgs_millisecond_resolution(queues: Queues) -> None:
    await queues.create_queue("h")
    await queues.send_message("h", "visible")
    await queues.send_message("h", "delayed", delay=10)
    attrs = await queues.get_queue_attributes("h")
    assert (attrs.msgs, attrs.hiddenmsgs) == (2, 1)


async def test_invalid_utf8_body_is_replaced_not_fatal(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("bin")
    msg_id = await queues.send_message("bin", "placeholder")
    await raw.hset("rsmq:bin:Q", msg_id, b"\xff\xfeok")
    msg = await queues.receive_message("bin")
    assert msg is not None and msg.message == "\ufffd\ufffdok"

"""Bad input and failures: typed errors, nothing lost, no hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import redis.exceptions
from redis.asyncio import Redis

from wsmq.queue import (
    InvalidFormat,
    InvalidValue,
    MissingParameter,
    QueueError,
    QueueNotFound,
    Queues,
    send_message,
)
from wsmq.queue.scripts import SCRIPTS
from wsmq.testing.redisproc import RedisProcess, free_port

GOOD_ID = "abcdefghij0123456789abcdefghij01"

Op = Callable[[Queues], Awaitable[Any]]

BAD_INPUT: list[tuple[str, Op, type[QueueError], str]] = [
    ("create bad name", lambda q: q.create_queue("a b"), InvalidFormat, "Invalid qname format"),
    ("delete_queue empty", lambda q: q.delete_queue(""), MissingParameter, "No qname supplied"),
    ("attrs bad name", lambda q: q.get_queue_attributes("a.b"), InvalidFormat,
     "Invalid qname format"),
    ("exists bad name", lambda q: q.queue_exists("ä"), InvalidFormat, "Invalid qname format"),
    ("send bad delay", lambda q: q.send_message("q", "m", delay=-1), InvalidValue,
     "delay must be between 0 and 9999999"),
    ("send lone surrogate", lambda q: q.send_message("q", "a\ud800b"), InvalidFormat,
     "Invalid message format"),
    ("receive bad vt", lambda q: q.receive_message("q", vt=10_000_000), InvalidValue,
     "vt must be between 0 and 9999999"),
    ("receive_messages bad vt", lambda q: q.receive_messages("q", 2, vt=cast(int, "x")),
     InvalidValue, "vt must be between 0 and 9999999"),
    ("pop bad name", lambda q: q.pop_message("q" * 161), InvalidFormat, "Invalid qname format"),
    ("delete bad id", lambda q: q.delete_messages("q", [GOOD_ID, "short"]), InvalidFormat,
     "Invalid id format"),
    ("change vis no id", lambda q: q.change_message_visibility("q", "", 1), MissingParameter,
     "No id supplied"),
    ("change vis bad vt", lambda q: q.change_messages_visibility("q", [GOOD_ID], -1),
     InvalidValue, "vt must be between 0 and 9999999"),
    ("change vis missing queue", lambda q: q.change_message_visibility("nope", GOOD_ID, 1),
     QueueNotFound, "Queue not found"),
    ("receive missing queue", lambda q: q.receive_message("nope"), QueueNotFound,
     "Queue not found"),
    ("pop missing queue", lambda q: q.pop_message("nope"), QueueNotFound, "Queue not found"),
    ("delete missing queue", lambda q: q.delete_queue("nope"), QueueNotFound, "Queue not found"),
    ("next_visible bad name", lambda q: q.next_visible_at(""), MissingParameter,
     "No qname supplied"),
    ("visible_counts bad name", lambda q: q.visible_counts(["ok", "not ok"]), InvalidFormat,
     "Invalid qname format"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("op", "cls", "message"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_input_raises_typed_error_and_loses_nothing(
    queues: Queues, op: Op, cls: type[QueueError], message: str
) -> None:
    await queues.create_queue("q")
    kept = await queues.send_message("q", "keep me")
    with pytest.raises(cls) as err:
        await op(queues)
    assert err.value.message == message and isinstance(err.value, QueueError)
    msg = await queues.receive_message("q")
    assert msg is not None and (msg.id, msg.message) == (kept, "keep me")


async def test_unreachable_redis_fails_fast() -> None:
    port = free_port()  # nothing listens here
    q = Queues.from_url(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(redis.exceptions.ConnectionError):
                await q.send_message("q", "x")
            with pytest.raises(redis.exceptions.ConnectionError):
                await send_message("q", "x", redis_url=f"redis://127.0.0.1:{port}/0")
    finally:
        await q.close()
    assert time.monotonic() - started < 5


async def test_scripts_survive_script_flush(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("f")
    await queues.send_message("f", "a")
    await raw.script_flush()
    msg_id = await queues.send_message("f", "b")  # NOSCRIPT -> EVAL, cached again
    assert await raw.script_exists(SCRIPTS["send"].sha) == [True]
    await raw.script_flush()
    got = await queues.receive_messages("f", 5)
    assert [m.message for m in got] == ["a", "b"] and got[1].id == msg_id
    await raw.script_flush()
    assert await queues.change_message_visibility("f", msg_id, 0)
    await raw.script_flush()
    assert await queues.delete_message("f", msg_id)


async def test_redis_restart_mid_use(redis_factory: Callable[..., RedisProcess]) -> None:
    proc = redis_factory(appendonly=True)
    q = Queues.from_url(proc.url)
    try:
        await q.create_queue("r")
        first = await q.send_message("r", "before restart")
        proc.restart()  # same port and data dir; scripts cache is gone
        got = await q.receive_message("r")  # the pooled connection is dead: retried, works
        assert got is not None and got.id == first
        assert await q.send_message("r", "after restart")
        proc.kill()
        started = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            await q.receive_message("r")
        assert time.monotonic() - started < 5
        proc.start()
        assert (await q.get_queue_attributes("r")).msgs == 2
    finally:
        await q.close()


async def test_one_off_send_message(redis_url: str, queues: Queues) -> None:
    with pytest.raises(QueueNotFound):
        await send_message("pub", "x", redis_url=redis_url)
    msg_id = await send_message("pub", "hello", redis_url=redis_url, create=True)
    again = await send_message("pub", "again", redis_url=redis_url, create=True, delay=0)
    got = await queues.receive_messages("pub", 5)
    assert [(m.id, m.message) for m in got] == [(msg_id, "hello"), (again, "again")]
    assert (await queues.get_queue_attributes("pub")).vt == 30


def test_error_repr_and_hierarchy() -> None:
    err = QueueNotFound()
    assert repr(err) == "QueueNotFound(name='queueNotFound', message='Queue not found')"
    assert isinstance(err, QueueError) and isinstance(err, Exception)
    bad = InvalidValue("vt", 0, 9999999)
    assert (bad.item, bad.min, bad.max) == ("vt", 0, 9999999)

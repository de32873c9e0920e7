"""DeliveryEngine.nack_many / extend_many against a real private Redis: only held ids change,
a nack gives the message up (rc+1 on its next delivery), an extend keeps it held."""

from __future__ import annotations

import time

from wsmq.queue import Queues

from .test_delivery import NS, EngineFactory, Sink, attrs, make_engine, queues

__all__ = ["make_engine", "queues"]  # fixtures, re-exported for pytest


async def visible_at_ms(queues: Queues, msg_id: str) -> float:
    score = await queues.redis.zscore(f"{NS}:q1", msg_id)
    assert score is not None
    return float(score)


async def test_nack_gives_held_messages_back_with_their_delay(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=60)
    await queues.send_messages("q1", ["a", "b"])
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True, cap=2)
    sub = await engine.subscribe("q1", sink)
    first, second = await sink.wait_for(2)
    other = await engine.subscribe("q1", Sink(ack_mode=True, cap=0))
    unknown = "0" * 32
    assert await engine.nack_many(other, [first.id], 0) == [False]  # not its message
    assert await engine.nack_many(sub, [second.id, unknown], 30) == [True, False]
    assert sub.held == (first.id,)
    assert await visible_at_ms(queues, second.id) >= time.time() * 1000 + 25_000
    sink.unacked -= 1
    assert await engine.nack_many(sub, [first.id, first.id], 0) == [True, False]  # once
    (*_, again) = await sink.wait_for(3)  # back at once, to the subscriber with room
    assert (again.id, again.rc) == (first.id, first.rc + 1)
    assert (await attrs(queues, "q1"))[2] == 3  # three receives, not four


async def test_extend_keeps_held_messages_hidden_and_held(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("q1", vt=2)
    await queues.send_message("q1", "slow")
    engine = await make_engine(poll_interval=60)
    sink = Sink(ack_mode=True)
    sub = await engine.subscribe("q1", sink)
    (msg,) = await sink.wait_for(1)
    other = await engine.subscribe("q1", Sink(ack_mode=True))
    before = await visible_at_ms(queues, msg.id)
    assert await engine.extend_many(other, [msg.id], 600) == [False]
    assert await visible_at_ms(queues, msg.id) == before
    assert await engine.extend_many(sub, [msg.id, "0" * 32], 600) == [True, False]
    assert await visible_at_ms(queues, msg.id) >= time.time() * 1000 + 590_000
    assert sub.held == (msg.id,)
    assert await engine.ack(sub, msg.id)
    assert await engine.extend_many(sub, [msg.id], 600) == [False]

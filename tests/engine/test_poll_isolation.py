"""One queue whose key has the wrong type never stops the fallback poll for the others."""

from __future__ import annotations

import logging

import pytest
import redis.asyncio as aioredis

from wsmq.queue import Queues

from .test_delivery import NS, EngineFactory, Sink, make_engine, queues

__all__ = ["make_engine", "queues"]  # fixtures used here


async def test_a_wrong_type_key_does_not_stop_the_poll_for_the_others(
    redis_url: str,
    queues: Queues,
    make_engine: EngineFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await queues.create_queue("broken")
    await queues.create_queue("healthy")
    engine = await make_engine(realtime=False, poll_interval=0.1)
    await engine.subscribe("broken", Sink())
    healthy = Sink()
    await engine.subscribe("healthy", healthy)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await raw.delete(f"{NS}:broken")
        await raw.set(f"{NS}:broken", "not a sorted set")  # e.g. another program's key
    finally:
        await raw.aclose()
    assert await queues.visible_counts(["broken", "healthy"]) == {"broken": -1, "healthy": 0}

    with caplog.at_level(logging.WARNING, logger="wsmq.engine"):
        quiet = Queues.from_url(redis_url, ns=NS, realtime=False)  # no notification: poll only
        try:
            await quiet.send_message("healthy", "still delivered")
            await quiet.send_message("healthy", "and again")
        finally:
            await quiet.close()
        got = await healthy.wait_for(2, timeout=5)
    assert [m.message for m in got] == ["still delivered", "and again"]
    warnings = [r for r in caplog.records if getattr(r, "event", None) == "queue_broken"]
    assert len(warnings) == 1  # once, not every poll

"""The fan-out runs a node shares between its consumers of a queue (wsmq/engine/fanout_runs.py,
docs/delivery.md "Who copies, and when"), on a real private Redis: one run per wake-up for all
of a node's devices, a burst of devices subscribing at once stays quiet, and a registry that
keeps changing is retried without a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tests.engine.test_delivery import Counting, EngineFactory, Sink, eventually, running_engines
from wsmq.queue import Queues
from wsmq.queue.devices import FAN_OUT_BUDGET, DevicesChanging, FanOut

NS = "rsmq"


@pytest.fixture
async def queues(redis_url: str) -> AsyncIterator[Queues]:
    q = Queues.from_url(redis_url, ns=NS, realtime=True)
    try:
        yield q
    finally:
        await q.close()


@pytest.fixture
async def make_engine(redis_url: str, queues: Queues) -> AsyncIterator[EngineFactory]:
    async with running_engines(redis_url, queues) as make:
        yield make


def _loud(records: list[logging.LogRecord]) -> list[str]:
    """Warnings, errors and tracebacks: what a burst of devices must not log."""
    return [r.getMessage() for r in records if r.levelno >= logging.WARNING or r.exc_info]


def _events(records: list[logging.LogRecord], event: str) -> int:
    return sum(1 for r in records if getattr(r, "event", None) == event)


async def test_one_fan_out_run_per_wake_up_for_all_devices_of_a_node(
    queues: Queues, make_engine: EngineFactory
) -> None:
    await queues.create_queue("many")
    engine = await make_engine(poll_interval=60)
    sinks = [Sink() for _ in range(30)]
    for i, sink in enumerate(sinks):
        await engine.subscribe("many", sink, device=f"d{i}")
    await queues.send_message("many", "warm-up")
    for sink in sinks:
        await sink.wait_for(1)
    counting = Counting(queues, "fan_out")
    await queues.send_message("many", "hello")
    for sink in sinks:
        assert (await sink.wait_for(2))[-1].message == "hello"
    # Each consumer alone would run the script once per wake-up: 30 calls of 30 inboxes.
    # Shared: one run for the notification (plus at most the warm-up's last, still in flight).
    assert counting.calls["fan_out"] <= 2


async def test_a_burst_of_100_devices_is_quiet_and_each_gets_every_message(
    queues: Queues, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsmq")
    await queues.create_queue("crowd", vt=30)
    nodes = [await make_engine(poll_interval=60), await make_engine(poll_interval=60)]
    sinks = [Sink(cap=100_000) for _ in range(100)]
    sent: list[str] = []  # sent while the devices subscribe: the registry changes under them
    joined = asyncio.Event()

    async def publish() -> None:
        while not joined.is_set():
            body = f"e{len(sent)}"
            await queues.send_message("crowd", body)
            sent.append(body)
            await asyncio.sleep(0.002)  # pacing: a few hundred messages in the burst

    async def join(i: int) -> int:
        await asyncio.sleep(i * 0.002)  # handshakes arrive over ~0.2 s, as in the fan-out bench
        await nodes[i % 2].subscribe("crowd", sinks[i], device=f"d{i}")
        return len(sent)  # every message sent after this one must reach the device

    publisher = asyncio.create_task(publish())
    async with asyncio.timeout(30):
        first_due = await asyncio.gather(*(join(i) for i in range(100)))
    joined.set()
    await publisher
    after = [f"m{i}" for i in range(20)]
    await queues.send_messages("crowd", after)

    async def all_arrived() -> bool:
        return all(s.got and s.got[-1].message == after[-1] for s in sinks)

    await eventually(all_arrived, timeout=30)
    for sink, due in zip(sinks, first_due, strict=True):
        bodies = sink.bodies()
        assert bodies[-len(after) :] == after
        early = bodies[: -len(after)]
        # In order, with no gap: the messages sent from the device's registration on (the one
        # in flight when subscribe() returned may have been copied before it).
        assert early == sent[len(sent) - len(early) :]
        assert len(early) >= len(sent) - due - 1
    assert _loud(caplog.records) == []
    assert _events(caplog.records, "devices_changing") <= len(nodes)  # one line per episode


async def test_a_registry_that_keeps_changing_is_retried_quietly(
    queues: Queues, make_engine: EngineFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsmq")
    await queues.create_queue("busy")
    real = queues.fan_out
    failures = 0

    async def changing(qname: str, retention_ms: int, *, budget: int = FAN_OUT_BUDGET) -> FanOut:
        nonlocal failures
        if budget and failures < 10:  # longer than one run's retries: the consumer's too
            failures += 1
            raise DevicesChanging(f"the devices of queue {qname} kept changing")
        return await real(qname, retention_ms, budget=budget)

    queues.fan_out = changing  # type: ignore[method-assign]
    engine = await make_engine(poll_interval=60)
    sink = Sink()
    await engine.subscribe("busy", sink, device="d1")
    await queues.send_messages("busy", ["a", "b"])
    await sink.wait_for(2, timeout=15)
    assert sink.bodies() == ["a", "b"]
    assert failures == 10
    assert _loud(caplog.records) == []
    assert _events(caplog.records, "devices_changing") == 1

"""DeadlineTimer: every connection's session deadline on one loop timer."""

from __future__ import annotations

import asyncio
import time

import pytest

from wsmq.gateway.deadlines import DeadlineTimer


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.event = asyncio.Event()
        self.want = 1

    def __call__(self, item: str) -> None:
        self.seen.append((item, time.time()))
        if len(self.seen) >= self.want:
            self.event.set()

    async def wait(self, count: int, timeout: float = 2.0) -> None:
        self.want = count
        if len(self.seen) < count:
            self.event.clear()
            async with asyncio.timeout(timeout):
                await self.event.wait()


async def test_items_run_in_deadline_order_and_not_before() -> None:
    rec = Recorder()
    timer: DeadlineTimer[str] = DeadlineTimer(rec)
    now = time.time()
    whens = {"c": now + 0.15, "a": now + 0.05, "b": now + 0.10, "past": now - 5}
    for item, when in whens.items():
        timer.schedule(when, item)
    assert len(timer) == 4
    await rec.wait(4)
    assert [item for item, _ in rec.seen] == ["past", "a", "b", "c"]
    for item, at in rec.seen:
        assert at >= whens[item]
    assert len(timer) == 0


async def test_cancelled_items_never_run() -> None:
    rec = Recorder()
    timer: DeadlineTimer[str] = DeadlineTimer(rec)
    now = time.time()
    first = timer.schedule(now + 0.05, "cancelled")
    timer.schedule(now + 0.1, "kept")
    timer.cancel(first)
    timer.cancel(first)  # twice: a no-op
    assert len(timer) == 1
    await rec.wait(1)
    await asyncio.sleep(0.1)  # give a wrongly kept entry its chance to run
    assert [item for item, _ in rec.seen] == ["kept"]


async def test_an_earlier_deadline_rearms_the_timer() -> None:
    rec = Recorder()
    timer: DeadlineTimer[str] = DeadlineTimer(rec)
    timer.schedule(time.time() + 60, "late")
    started = time.monotonic()
    timer.schedule(time.time() + 0.05, "soon")
    await rec.wait(1)
    assert rec.seen[0][0] == "soon" and time.monotonic() - started < 1.0
    timer.close()


async def test_handler_may_schedule_again_and_errors_do_not_stop_others() -> None:
    seen: list[str] = []
    done = asyncio.Event()
    timer: DeadlineTimer[str]

    def due(item: str) -> None:
        seen.append(item)
        if item == "boom":
            raise RuntimeError("a bug in one connection")
        if item == "again":
            timer.schedule(time.time() + 0.02, "second time")
        if item == "second time":
            done.set()

    timer = DeadlineTimer(due)
    now = time.time()
    timer.schedule(now + 0.01, "boom")
    timer.schedule(now + 0.01, "again")
    async with asyncio.timeout(2):
        await done.wait()
    assert seen == ["boom", "again", "second time"]


async def test_churn_leaves_no_references_behind() -> None:
    """Connections that close before their expiry must not stay in the heap until then."""
    timer: DeadlineTimer[object] = DeadlineTimer(lambda item: None)
    far = time.time() + 3600
    kept = timer.schedule(far, object())
    for _ in range(10_000):
        timer.cancel(timer.schedule(far, object()))
    assert len(timer) == 1
    assert len(timer._heap) < 2 * DeadlineTimer.COMPACT_MIN
    timer.cancel(kept)
    assert len(timer) == 0 and timer._handle is None


@pytest.mark.parametrize("step", [-100.0, 100.0])
async def test_a_wall_clock_step_never_runs_early_nor_loses(
    step: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DeadlineTimer, "MAX_SLEEP", 0.05)
    clock = [1_000_000.0]
    rec = Recorder()
    timer: DeadlineTimer[str] = DeadlineTimer(rec, clock=lambda: clock[0])
    timer.schedule(clock[0] + 50, "item")
    clock[0] += step  # NTP steps the clock while the loop timer sleeps
    if step < 0:  # behind: the timer wakes, finds nothing due by the new clock, sleeps again
        await asyncio.sleep(0.2)
        assert rec.seen == [] and len(timer) == 1
        clock[0] = 1_000_051.0  # the new clock reaches the deadline
    await rec.wait(1)  # forward: runs within MAX_SLEEP of the step, not 50 s later
    assert rec.seen[0][0] == "item"

"""HeartbeatSweeper: every socket's heartbeat on one loop timer (the real sockets are in
``tests/e2e/test_delivery_e2e.py``: dead peers dropped, live silent peers kept)."""

from __future__ import annotations

import asyncio

import pytest

from wsmq.gateway.heartbeat import HeartbeatSweeper, sweep


class Member:
    def __init__(self, *, fail: bool = False) -> None:
        self.heartbeat_misses = 0
        self.awaiting_frame = True
        self.send_stalled = False
        self.pings = 0
        self.lost = 0
        self.fail = fail
        self.pinged = asyncio.Event()

    def send_ping(self) -> None:
        if self.fail:
            raise RuntimeError("this socket's ping failed")
        self.pings += 1
        self.pinged.set()

    def heartbeat_lost(self) -> None:
        self.lost += 1


def test_a_silent_peer_is_pinged_on_the_second_sweep_and_dropped_on_the_third() -> None:
    m = Member()
    sweep([m])
    assert (m.pings, m.lost) == (0, 0)  # silent for at most half an interval: left alone
    sweep([m])
    assert (m.pings, m.lost) == (1, 0)
    sweep([m])
    assert (m.pings, m.lost) == (1, 1)  # the ping went unanswered for half an interval
    sweep([m])
    assert m.pings == 1  # never pinged again; heartbeat_lost is idempotent on its side


def test_any_frame_from_the_peer_starts_the_count_again() -> None:
    m = Member()
    for _ in range(10):
        sweep([m])
        sweep([m])  # pinged
        m.heartbeat_misses = 0  # what the read loop does with the pong (or any frame)
    assert (m.pings, m.lost) == (10, 0)  # one ping per interval, never dropped


def test_a_socket_whose_read_loop_is_busy_is_not_judged() -> None:
    """Its peer's answer may sit unread in the socket (a subscribe waiting for Redis, acks
    waiting for room): while the peer takes our bytes, silence counts only while the loop
    waits for a frame."""
    m = Member()
    sweep([m])
    sweep([m])
    m.awaiting_frame = False
    for _ in range(5):
        sweep([m])
    assert (m.pings, m.lost, m.heartbeat_misses) == (1, 0, 0)
    m.awaiting_frame = True
    sweep([m])
    sweep([m])
    assert (m.pings, m.lost) == (2, 0)


def test_a_busy_socket_whose_peer_takes_nothing_is_judged() -> None:
    """Read loop busy and transport paused (acks waiting for room to write their replies):
    the peer's silence counts, or a black-holed peer would hold its socket forever."""
    m = Member()
    m.awaiting_frame = False
    m.send_stalled = True
    sweep([m])
    sweep([m])
    assert (m.pings, m.lost) == (1, 0)
    sweep([m])
    assert m.lost == 1
    drained = Member()  # the peer took our bytes again: busy, not judged
    drained.awaiting_frame = False
    drained.send_stalled = True
    sweep([drained])
    drained.send_stalled = False
    sweep([drained])
    sweep([drained])
    assert (drained.pings, drained.lost, drained.heartbeat_misses) == (0, 0, 0)


def test_one_failing_socket_does_not_skip_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bad, good = Member(fail=True), Member()
    sweep([bad, good])
    sweep([bad, good])
    assert good.pings == 1
    assert "heartbeat of one socket failed" in caplog.text


async def test_the_sweeper_runs_while_the_node_holds_sockets_and_then_disarms() -> None:
    members: list[Member] = [Member()]
    sweeper = HeartbeatSweeper(0.04, lambda: members)
    sweeper.start()
    sweeper.start()  # idempotent: one timer
    assert sweeper.running
    async with asyncio.timeout(2):
        await members[0].pinged.wait()
    members.clear()

    async def disarmed() -> None:
        while sweeper.running:
            await asyncio.sleep(0.01)

    async with asyncio.timeout(2):
        await disarmed()  # the next sweep found no socket: no timer on an idle node
    members.append(Member())
    sweeper.start()
    assert sweeper.running
    sweeper.close()
    assert not sweeper.running


async def test_interval_zero_disables_the_heartbeat() -> None:
    sweeper = HeartbeatSweeper(0, lambda: [Member()])
    sweeper.start()
    assert not sweeper.running

"""Chaos suite: each fault on its own, bounded in time (WSMQ_CHAOS=1: bigger, repeated).

Every test runs real ``wsmq serve`` subprocesses, a real Redis deployment and acking v1 clients
(see ``faults.py``); the assertions are :func:`~tests.chaos.faults.problems` (nothing lost,
duplicates only within the in-flight bound, recovery within a bound) plus the fault's own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .faults import ChaosConfig, problems, run_fault
from .harness import ChaosReport
from .run import skip_reason

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

FULL = os.environ.get("WSMQ_CHAOS") == "1"
CONFIG = ChaosConfig.full() if FULL else ChaosConfig()


async def chaos(fault: str, tmp_path: Path) -> ChaosReport:
    reason = skip_reason(fault)
    if reason is not None:
        pytest.skip(reason)
    report = await run_fault(fault, CONFIG, tmp_path)
    print(report.line())
    assert problems(report, CONFIG) == [], report
    assert report.delivered_unique >= report.sent
    return report


async def test_node_kill(tmp_path: Path) -> None:
    report = await chaos("node-kill", tmp_path)
    assert report.reconnects >= 1  # the dead node's clients moved to a live one
    # Idle consumers parked: sends were handed to nodes, the killed one's included, and still
    # nothing was lost (a hand-off the dead node never read comes back after the vt).
    assert report.handoffs >= 1


async def test_node_graceful_restart(tmp_path: Path) -> None:
    report = await chaos("node-restart", tmp_path)
    assert report.reconnects >= 1  # its clients were closed with 1001 and moved


async def test_redis_restart(tmp_path: Path) -> None:
    report = await chaos("redis-restart", tmp_path)
    assert report.send_errors >= 1  # the publisher really met the outage


async def test_redis_connections_killed(tmp_path: Path) -> None:
    report = await chaos("redis-conn-kill", tmp_path)
    assert report.handoffs >= 1  # the listeners' connections (hand-off channels) died too


async def test_client_connections_cut(tmp_path: Path) -> None:
    report = await chaos("conn-cut", tmp_path)
    assert report.reconnects >= CONFIG.consumers * CONFIG.repeats


async def test_client_connections_blackholed(tmp_path: Path) -> None:
    report = await chaos("conn-blackhole", tmp_path)
    assert report.reconnects >= CONFIG.consumers * CONFIG.repeats


async def test_every_device_gets_every_message_through_a_node_kill(tmp_path: Path) -> None:
    report = await chaos("device-node-kill", tmp_path)
    assert report.reconnects >= 1  # the dead node's devices moved to a live one


async def test_sentinel_failover(tmp_path: Path) -> None:
    await chaos("sentinel-failover", tmp_path)


async def test_cluster_failover(tmp_path: Path) -> None:
    await chaos("cluster-failover", tmp_path)

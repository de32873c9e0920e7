"""Soak: connections held under steady traffic with churn; node RSS and fds stay flat.

Default run: 200 connections for 15 s (after a 3 s warm-up). ``WSMQ_CHAOS=1``: 2000
connections for 60 s. The 10k-connection, several-minute version is ``scripts/soak``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from .soak import SoakConfig, run_soak

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]

FULL = os.environ.get("WSMQ_CHAOS") == "1"


async def test_soak_rss_and_fds_flat(tmp_path: Path) -> None:
    if FULL:
        cfg = SoakConfig(connections=2000, duration=60, warmup=10, rate=200, nodes=2, users=200)
    else:
        cfg = SoakConfig(connections=200, duration=15, warmup=3, rate=50, users=50)
    async with asyncio.timeout(600 if FULL else 150):  # a hang fails with its traceback
        result = await run_soak(cfg, tmp_path)
    print(result.detail())
    print(result.line())
    assert result.drained, result.detail()  # every message acked, no consumer stuck
    received = sum(int(c["received"]) for c in result.clients)
    assert received >= result.msgs  # at-least-once: nothing lost
    assert result.fds_start >= cfg.connections  # the sockets really were held by the node
    assert result.conns_start >= cfg.connections - result.fd_slack
    assert result.held, result.detail()  # connections were not dropped along the way
    assert result.verdict == "flat", result.detail()

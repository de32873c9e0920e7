"""``bench/scale.py``: the scale scenario at 300 sockets, through ``python -m bench`` (≈ 10 s),
and its limits check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.procs import ROOT
from bench.scale_client import client_frame
from bench.scale_config import ScaleConfig


def test_scale_scenario_holds_sockets_and_survives_a_node_restart(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench", "--quick", "--scenarios", "scale", "--systems", "wsmq"]
    cmd += ["--no-plot", "--out", str(tmp_path)]  # quick profile: 300 sockets, 100 messages
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    result = json.loads(path.read_text())["scenarios"]["scale"]["wsmq"]
    assert "error" not in result, result
    # every socket authenticated and subscribed, and the node counted each one
    assert result["connections"] == 300
    assert result["node0_connections_metric"] == 300
    assert 0 < result["rss_per_conn_kib"] < 200
    assert result["idle_nodes_cpu_pct"] >= 0 and result["idle_window_s"] >= 1
    # after the restart every socket is back on one of the two nodes, and every message
    # published during the storm arrived
    assert result["storm_node0_connections"] + result["storm_node1_connections"] == 300
    assert result["storm_node_exit"] == 0  # a graceful exit within the grace period
    assert 0 <= result["storm_first_closed_s"] <= result["storm_all_closed_s"]
    assert result["storm_all_closed_s"] <= result["storm_all_subscribed_s"]
    assert result["storm_published"] == 100
    assert result["storm_delivered"] == 100
    assert "== scale ==" in proc.stdout


def test_more_sockets_than_a_process_may_open_is_refused_before_anything_starts() -> None:
    cmd = [sys.executable, "-m", "bench.scale", "--connections", "5000000"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "need an open-file limit of at least 5,000,512" in proc.stderr
    assert "--initial-nodes" in proc.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nodes": 1}, "nodes must be >= 2"),
        ({"initial_nodes": 3}, "initial_nodes must be between 1 and nodes"),
        ({"users": 2000}, "users must be between 1 and queues"),
    ],
)
def test_bad_sizes_are_refused(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScaleConfig(**changes).check()


def test_client_processes_and_source_addresses_follow_the_limits() -> None:
    cfg = ScaleConfig(connections=100_000, client_procs=3)
    assert cfg.procs_for(20_000) == 6  # 19,488 sockets each at most
    assert cfg.procs_for(1 << 20) == 3
    assert cfg.ips == [f"127.0.0.{i}" for i in range(2, 7)]


@pytest.mark.parametrize(
    ("size", "header"),
    [(5, b"\x81\x85"), (126, b"\x81\xfe\x00\x7e"), (70_000, b"\x81\xff" + (70_000).to_bytes(8))],
)
def test_client_frames_are_masked_with_the_right_length(size: int, header: bytes) -> None:
    frame = client_frame(0x1, b"x" * size)
    assert frame.startswith(header + b"\x00\x00\x00\x00")
    assert len(frame) == len(header) + 4 + size


def test_scale_runs_only_when_asked_for() -> None:
    from bench.run import parse_args

    assert "scale" not in parse_args([]).scenarios
    assert "scale" not in parse_args(["--quick"]).scenarios
    assert parse_args(["--scenarios", "scale"]).scenarios == ["scale"]

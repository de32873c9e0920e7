"""The benchmark harness (``scripts/bench``): its pure parts, and one bounded real run.

The real run is the drain scenario at ``--quick`` size against every system (wsmq nodes, the
pub/sub bridge, and the rsmq-worker bridge when Node.js is available), on private redis-servers:
it proves the harness starts the systems, moves messages through them and writes its JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.capacity import parse_benchmark_csv
from bench.profile import QUICK
from bench.run import override
from bench.stats import count_at, latency_summary, percentile, ratios, window_rate

ROOT = Path(__file__).resolve().parent.parent


def test_percentile_interpolates_and_handles_empty() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0], 0.99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([4.0, 1.0, 3.0, 2.0], 1.0) == 4.0


def test_latency_summary_keys_and_rounding() -> None:
    summary = latency_summary([float(i) for i in range(1, 1001)], prefix="1000_")
    assert summary["1000_p50_ms"] == 500.5
    assert summary["1000_max_ms"] == 1000.0
    assert summary["1000_samples"] == 1000
    assert latency_summary([], prefix="idle_")["idle_p99_ms"] is None


def test_window_rate_counts_only_inside_the_window() -> None:
    series = [(0.0, 0), (1.0, 100), (2.0, 300), (3.0, 300)]
    assert count_at(series, 1.5) == 200
    assert count_at(series, -1.0) == 0
    assert count_at(series, 9.0) == 300
    assert window_rate([series, series], 1.0, 2.0) == 400.0
    assert window_rate([series], 2.0, 2.0) == 0.0


def test_ratios_are_subject_over_peer_for_shared_numeric_metrics() -> None:
    scenarios: dict[str, dict[str, dict[str, Any]]] = {
        "drain": {
            "wsmq": {"msgs_per_s": 1000.0, "note": "x", "only_wsmq": 1, "backlog_end": 5},
            "rsmq-worker": {"msgs_per_s": 250.0, "note": "y", "backlog_end": 10},
            "pubsub": {"msgs_per_s": 0, "skipped": "n/a"},
        },
        "redis": {"redis": {"publish_msgs_per_s": 1.0}},
    }
    assert ratios(scenarios) == {"drain": {"rsmq-worker": {"msgs_per_s": 4.0}}}


def test_table_lists_every_system_metric_and_ratio() -> None:
    results: dict[str, Any] = {
        "scenarios": {
            "drain": {
                "wsmq": {"legacy_msgs_per_s": 5000.0},
                "rsmq-worker": {"legacy_msgs_per_s": 500.0},
                "pubsub": {"skipped": "because"},
            }
        },
        "ratios": {"drain": {"rsmq-worker": {"legacy_msgs_per_s": 10.0}}},
    }
    text = report.table(results)
    assert "== drain ==" in text
    assert "wsmq/rsmq-worker" in text
    line = next(row for row in text.splitlines() if row.startswith("legacy_msgs_per_s"))
    assert line.split() == ["legacy_msgs_per_s", "5,000", "500", "-", "10"]


def test_profile_overrides_are_typed_and_checked() -> None:
    profile = override(QUICK, ["drain_count=200", "lat_grace=2.5"])
    assert (profile.drain_count, profile.lat_grace) == (200, 2.5)
    assert profile.tp_clients == QUICK.tp_clients
    for bad in ("drain_count", "nope=1", "drain_count=many", "tp_variants=1"):
        with pytest.raises(ValueError):
            override(QUICK, [bad])


def test_redis_benchmark_csv_is_parsed() -> None:
    text = '"test","rps","avg_latency_ms"\n"EVAL","12345.67","0.5"\n'
    assert parse_benchmark_csv(text) == 12345.67
    assert parse_benchmark_csv("") is None


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = {
        "meta": {"profile": "test", "started": "now"},
        "scenarios": {
            "latency": {"wsmq": {"1000_p50_ms": 2.0}, "pubsub": {"1000_p50_ms": 1.0}},
            "drain": {"wsmq": {"legacy_msgs_per_s": 100.0}, "pubsub": {"skipped": "x"}},
        },
    }
    path = tmp_path / "plot.png"
    assert report.plot(results, path) is None
    assert path.read_bytes().startswith(b"\x89PNG")


def test_quick_drain_run_against_every_system(tmp_path: Path) -> None:
    env = dict(os.environ)
    node_modules = Path(env.get("WSMQ_NODE_MODULES", ROOT / ".npm-interop" / "node_modules"))
    node = shutil.which("node") is not None and (node_modules / "rsmq-worker").is_dir()
    cmd = [sys.executable, "-m", "bench", "--quick", "--scenarios", "drain", "--no-plot"]
    # few messages, and time enough for all of them on a busy CI machine (rsmq-worker polls)
    cmd += ["--set", "drain_count=200", "--set", "drain_timeout=60"]
    cmd += ["--systems", "wsmq,pubsub,rsmq-worker" if node else "wsmq,pubsub"]
    cmd += ["--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    results = json.loads(files[0].read_text())
    drain = results["scenarios"]["drain"]
    # everything queued while the client was offline arrives; pub/sub had nobody to deliver to
    assert drain["wsmq"]["legacy_delivered"] == 1.0, drain["wsmq"]
    assert drain["wsmq"]["legacy_msgs_per_s"] > 0
    assert drain["pubsub"]["legacy_delivered"] == 0.0
    if node:
        assert drain["rsmq-worker"]["legacy_delivered"] == 1.0, drain["rsmq-worker"]
        assert results["ratios"]["drain"]["rsmq-worker"]["legacy_msgs_per_s"] > 0
    assert "== drain ==" in proc.stdout
    assert "[bench" in proc.stderr  # progress is shown while it runs


def test_handshakes_script_measures_both_systems() -> None:
    # bench/handshakes.py needs Node.js for its client process, like the connections scenario.
    node_modules = Path(os.environ.get("WSMQ_NODE_MODULES", ROOT / ".npm-interop" / "node_modules"))
    if shutil.which("node") is None or not (node_modules / "ws").is_dir():
        pytest.skip("Node.js and the npm ws package are needed")
    cmd = [sys.executable, "-m", "bench.handshakes", "--count", "20", "--rounds", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    wsmq, pubsub = out["rounds"]["wsmq"][0], out["rounds"]["pubsub"][0]
    assert wsmq["handshakes_per_s"] > 0 and pubsub["handshakes_per_s"] > 0
    # /proc counts CPU in clock ticks (10 ms): 20 handshakes may take less than one
    assert wsmq["node_cpu_us"] >= 0 and "subscribe_cpu_us" in wsmq  # every subscription seen
    assert len(out["summary"]["wsmq/pubsub handshakes"]["per_round"]) == 1

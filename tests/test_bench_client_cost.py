"""``bench/client_cost.py``: one small real run (a node, Redis, each consumer in a process)."""

from __future__ import annotations

from bench.client_cost import KINDS, measure


def test_every_consumer_drains_its_queue_and_reports_rate_and_cpu() -> None:
    lines: list[str] = []
    result = measure(n=300, rounds=1, say=lines.append)
    assert len(lines) == len(KINDS)
    for kind in KINDS:
        figures = result[kind]
        assert figures["msgs_per_s"] > 0 and figures["cpu_us_per_msg"] > 0, (kind, figures)
        assert len(result["runs"][kind]) == 1

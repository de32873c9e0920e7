"""``bench/fanout.py``: a tiny real run (a node, Redis, device and member subscribers in a
load-generator process), so the fan-out scenario of ``scripts/bench`` cannot rot."""

from __future__ import annotations

import asyncio

from bench import report
from bench.fanout import BASELINE, SUBJECT, Sizes, measure
from bench.profile import FULL, QUICK
from bench.run import QUICK_SCENARIOS, parse_args
from bench.stats import ratios

TINY = Sizes(
    devices=(3,),
    group_members=3,
    rate_copies=300,
    # Long enough that copies land inside the window even when a loaded machine delays the
    # group's extra hop by a few hundred ms (copies_per_s counts the window only).
    duration=1.5,
    warmup=0.2,
    grace=3.0,
    flood_copies=60,
)


async def test_every_case_delivers_every_copy_and_reports_rate_latency_and_cpu() -> None:
    lines: list[str] = []
    async with asyncio.timeout(90):
        result = await measure(TINY, say=lines.append)
    assert len(lines) == 3  # dev3 and group3 by wsmq, one baseline for 3 recipients
    assert set(result) == {SUBJECT, BASELINE}
    for column in (SUBJECT, BASELINE):
        for case in ("dev3", "group3"):
            m = result[column]
            assert m[f"{case}_delivered"] == 1.0, (column, case, m)
            assert m[f"{case}_samples"] == 150 * 3  # 100 messages/s for 1.5 s, 3 copies each
            for metric in ("copies_per_s", "p50_ms", "p99_ms", "redis_cpu_us_per_copy"):
                value = m[f"{case}_{metric}"]
                assert isinstance(value, float) and value > 0, (column, case, metric, value)
            assert m[f"{case}_max_copies_per_s"], (column, case)  # the flood finished
    # The baseline for 3 recipients is measured once and shown under both cases.
    assert result[BASELINE]["dev3_p50_ms"] == result[BASELINE]["group3_p50_ms"]
    scenarios = {"fanout": dict(result)}
    table = report.table({"scenarios": scenarios, "ratios": ratios(scenarios)})
    assert "wsmq/publisher" in table and "dev3_redis_cpu_us_per_copy" in table


def test_fanout_is_a_full_run_scenario_not_a_quick_one() -> None:
    assert "fanout" not in QUICK_SCENARIOS
    assert "fanout" in parse_args([]).scenarios
    assert parse_args(["--quick", "--scenarios", "fanout"]).scenarios == ["fanout"]
    assert QUICK.fo_rate_copies < FULL.fo_rate_copies

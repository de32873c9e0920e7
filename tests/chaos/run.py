"""``scripts/chaos``: every fault under bigger traffic, one figure line per fault.

    python -m tests.chaos.run                 # full sizes (ChaosConfig.full()), every fault
    python -m tests.chaos.run --short node-kill conn-cut
    python -m tests.chaos.run --json          # plus one JSON object per fault

Exit status 1 when any run lost a message, exceeded a bound or got stuck.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys

from .backends import scaleout_missing
from .faults import FAULTS, ChaosConfig, problems, run_fault

__all__ = ["main"]


def skip_reason(fault: str) -> str | None:
    """Why ``fault`` cannot run on this machine / with this code, or ``None``."""
    if fault == "sentinel-failover":
        return scaleout_missing("sentinel")
    if fault == "cluster-failover":
        return scaleout_missing("cluster")
    return None


async def _main(faults: list[str], config: ChaosConfig, as_json: bool) -> int:
    failed = 0
    for fault in faults:
        reason = skip_reason(fault)
        if reason is not None:
            print(f"chaos: fault={fault} skipped: {reason}", flush=True)
            continue
        try:
            report = await run_fault(fault, config)
        except (AssertionError, RuntimeError, OSError) as exc:
            failed += 1
            print(f"chaos: fault={fault} FAILED: {exc}", flush=True)
            continue
        wrong = problems(report, config)
        failed += bool(wrong)
        verdict = "ok" if not wrong else "FAILED: " + "; ".join(wrong)
        print(f"{report.line()} verdict={verdict}", flush=True)
        if as_json:
            print(json.dumps(dataclasses.asdict(report)), flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=__doc__.split("\n")[0])
    parser.add_argument("faults", nargs="*", metavar="FAULT", help=f"default: all of {FAULTS}")
    parser.add_argument("--short", action="store_true", help="the test suite's small sizes")
    parser.add_argument("--json", action="store_true", help="print each report as JSON too")
    args = parser.parse_args(argv)
    unknown = [f for f in args.faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose from {', '.join(FAULTS)}")
    config = ChaosConfig() if args.short else ChaosConfig.full()
    return asyncio.run(_main(list(args.faults) or list(FAULTS), config, args.json))


if __name__ == "__main__":
    sys.exit(main())

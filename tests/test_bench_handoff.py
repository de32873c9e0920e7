"""``bench/handoff.py``: one small real run (a private Redis, two real nodes)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.handoff import main


def test_each_side_delivers_and_only_the_handoff_node_takes_hand_offs(tmp_path: Path) -> None:
    out = tmp_path / "handoff.json"
    main(["--samples", "6", "--gap", "0.01", "0.02", "--json", str(out)])
    results = json.loads(out.read_text())["results"]
    assert results["handoff"]["n"] == results["no-handoff"]["n"] == 6
    # Every measured message (and maybe the warm-up) went by hand-off on one node, none on the
    # other: the A/B compares what it says it does.
    assert results["handoff"]["handoffs_taken"] >= 6
    assert results["no-handoff"]["handoffs_taken"] == 0

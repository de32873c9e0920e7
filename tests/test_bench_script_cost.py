"""``bench/script_cost.py``: one small real run (a private Redis, two script versions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.script_cost import PHASES, main


def test_both_versions_drain_their_queues_and_report_every_phase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cost.json"
    # HEAD against itself: any checkout has it; the drain raises if a message is left.
    main(["--messages", "300", "--rounds", "1", "--block", "100", "--batch", "40",
          "--group", "30", "--old-ref", "HEAD", "--json", str(out)])  # fmt: skip
    results = json.loads(out.read_text())["results"]
    for phase in PHASES:
        drained = phase in ("receive", "delete")  # both fills are drained
        for side in ("old", "new"):
            assert results[phase][side]["msgs"] == (600 if drained else 300)
            assert results[phase][side]["cpu_usec"] > 0
    assert "receive |" in capsys.readouterr().out

"""``wsmq serve`` tunes the garbage collector of its own process (``gc_tuning``)."""

from __future__ import annotations

import subprocess
import sys

from wsmq.cli.serve_cmd import GC_YOUNG_THRESHOLD


def test_tune_gc_freezes_the_start_up_heap_and_raises_the_young_threshold() -> None:
    # In a child process: the test runner's own collector is left alone.
    code = (
        "import gc; from wsmq.cli.serve_cmd import tune_gc; before = gc.get_threshold(); "
        "tune_gc(); after = gc.get_threshold(); "
        "print(gc.get_freeze_count() > 1000, after[0], after[1:] == before[1:])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["True", str(GC_YOUNG_THRESHOLD), "True"]

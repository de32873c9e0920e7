"""Every wsmq module imports on its own, first thing in a fresh process (no hidden import cycle
that only works when another module happened to be imported before)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = r"""
import importlib, pathlib, sys
failed = []
for path in sorted(pathlib.Path("wsmq").rglob("*.py")):
    if path.name == "__main__.py":
        continue
    name = ".".join(path.with_suffix("").parts).removesuffix(".__init__")
    for loaded in [m for m in sys.modules if m == "wsmq" or m.startswith("wsmq.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_first() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr

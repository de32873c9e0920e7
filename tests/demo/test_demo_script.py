"""What ``scripts/demo`` installs, run in a scratch copy of the checkout with stub programs.

The stubs (``.venv/bin/python``, ``.venv/bin/wsmq``, ``npm``) record how they were called, so
the script's decisions are checked without a download; the demo itself is tested for real in
``test_demo_cli.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.demo.helpers import ROOT


def _stub(path: Path, log: Path, extra: str = "") -> None:
    path.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\n{extra}')
    path.chmod(0o755)


def _checkout(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    (root / "examples").mkdir()
    shutil.copy2(ROOT / "scripts" / "demo", root / "scripts" / "demo")
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copy2(ROOT / "examples" / "package.json", root / "examples" / "package.json")
    log = tmp_path / "calls.log"
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    _stub(venv_bin / "python", log)
    _stub(venv_bin / "wsmq", log)
    tools = tmp_path / "tools"
    tools.mkdir()
    _stub(tools / "npm", log, "mkdir -p examples/node_modules\n")  # what npm would create
    env = {k: v for k, v in os.environ.items() if k != "WSMQ_DEMO_SKIP_INSTALL"}
    env["PATH"] = f"{tools}{os.pathsep}{env['PATH']}"
    env["WSMQ_REDIS_SERVER"] = "redis-server"  # never apt-get from a test
    return root, log, env


def _calls(root: Path, log: Path, env: dict[str, str], *args: str) -> list[str]:
    log.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(root / "scripts" / "demo"), *args],
        capture_output=True, text=True, timeout=60, env=env, cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines()


def test_scripts_demo_installs_only_what_the_demo_runs(tmp_path: Path) -> None:
    root, log, env = _checkout(tmp_path)
    calls = _calls(root, log, env, "--port", "0", "--json")
    installs = [c for c in calls if " pip install " in c]
    assert installs == [
        "python -m pip install -q --upgrade pip",
        "python -m pip install -q -e .[fast]",  # not the test tools
    ]
    assert calls[-1] == "wsmq demo --port 0 --json"
    assert not any(c.startswith("npm") for c in calls)  # Node packages only when asked

    # Installed once: the next run starts the demo straight away.
    assert _calls(root, log, env, "--port", "0") == ["wsmq demo --port 0"]
    # A venv that scripts/test set up (a superset) is used as it is.
    (root / ".venv" / ".wsmq-demo-installed").unlink()
    (root / ".venv" / ".wsmq-installed").touch()
    assert _calls(root, log, env) == ["wsmq demo"]


def test_scripts_demo_with_node_installs_the_examples_packages(tmp_path: Path) -> None:
    root, log, env = _checkout(tmp_path)
    (root / ".venv" / ".wsmq-demo-installed").touch()
    calls = _calls(root, log, env, "--with-node", "--port", "0")
    assert calls == [
        "npm install --prefix examples --no-audit --no-fund --loglevel=error",
        "wsmq demo --port 0",  # --with-node is the script's, not the demo's
    ]
    assert _calls(root, log, env, "--with-node") == ["wsmq demo"]  # installed once


def test_examples_pin_the_same_node_packages_as_the_interop_tests() -> None:
    examples = json.loads((ROOT / "examples" / "package.json").read_text())["dependencies"]
    interop = json.loads((ROOT / "interop" / "package.json").read_text())["dependencies"]
    assert set(examples) == {"ws", "rsmq"}
    assert {name: interop[name] for name in examples} == examples

"""``wsmq.testing`` is test infrastructure: only itself, the demo and ``wsmq demo`` import it."""

from __future__ import annotations

import ast
from pathlib import Path

WSMQ = Path(__file__).resolve().parents[1] / "wsmq"
ALLOWED = ("testing/", "demo/", "cli/demo_cmd.py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_product_packages_do_not_import_wsmq_testing() -> None:
    offenders = [
        f"{rel}: {name}"
        for path in sorted(WSMQ.rglob("*.py"))
        if not (rel := path.relative_to(WSMQ).as_posix()).startswith(ALLOWED)
        for name in sorted(_imports(path))
        if name == "wsmq.testing" or name.startswith("wsmq.testing.")
    ]
    assert not offenders, offenders

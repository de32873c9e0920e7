"""The gateway's logging: every record has an ``event`` (the connection's own records, with
its peer and user: ``tests/e2e/test_connection_log_e2e.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import wsmq.gateway

GATEWAY = Path(wsmq.gateway.__file__).parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _log_calls_without_event(path: Path) -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in LEVELS or not ast.unparse(node.func.value).endswith("log"):
            continue
        extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
        keys = extra.keys if isinstance(extra, ast.Dict) else []
        if not any(isinstance(k, ast.Constant) and k.value == "event" for k in keys):
            missing.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return missing


def test_every_log_call_of_the_gateway_names_its_event() -> None:
    missing = [m for path in sorted(GATEWAY.glob("*.py")) for m in _log_calls_without_event(path)]
    assert missing == []

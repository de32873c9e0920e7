"""Private internals of aiohttp, redis-py and asyncio are reached only from ``wsmq/_compat/``.

Outside it, this test fails on ``x._name`` where ``x`` is not ``self``/``cls`` (attribute
access, or ``getattr``/``setattr``/``hasattr``/``delattr`` with a literal ``"_name"``), and on
imports of a private module or name of those libraries (``redis._parsers``, ``from
aiohttp.web_protocol import _ErrInfo``). Types are not known to an AST walk, so the project's
own private members used across its classes are allowed by name below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "wsmq"
COMPAT = ROOT / "_compat"
LIBRARIES = frozenset({"aiohttp", "redis", "asyncio", "hiredis", "multidict", "yarl"})

#: ``x._name`` allowed outside ``_compat``: wsmq's own members, or public API with a leading
#: underscore. Keep it short; anything of a library belongs in ``wsmq/_compat/``.
ALLOWED_ATTRIBUTES = frozenset(
    {
        "_replace",  # namedtuple / urllib SplitResult public API
        "_asdict",  # namedtuple public API
        "_drop",  # wsmq.engine Subscription, used by the delivery engine and consumer
        "_hold",  # wsmq.engine Subscription
        "_take_all",  # wsmq.engine Subscription
        "_start",  # wsmq.gateway.server.Gateway, started by serve()
    }
)
_ATTR_FUNCS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _owner(node: ast.expr) -> bool:
    """``self`` or ``cls``: the class's own members."""
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def violations(source: str, filename: str) -> list[str]:
    """Each use of a library's private internals in ``source`` (``file:line: what``)."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    # Modules imported whole that are none of the libraries (``argparse._SubParsersAction``
    # is the standard library's, used in type hints).
    other_modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] not in LIBRARIES
    }
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            value = node.value
            if isinstance(value, ast.Name) and value.id in other_modules:
                continue
            if _private(node.attr) and not _owner(value):
                if node.attr not in ALLOWED_ATTRIBUTES:
                    found.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in _ATTR_FUNCS and len(node.args) >= 2:
                target, name = node.args[0], node.args[1]
                if (
                    isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                    and _private(name.value)
                    and not _owner(target)
                    and name.value not in ALLOWED_ATTRIBUTES
                ):
                    found.append(f"{where}: {func.id}(..., {name.value!r})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in LIBRARIES and any(_private(p) for p in parts[1:]):
                    found.append(f"{where}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            parts = node.module.split(".")
            if parts[0] in LIBRARIES and (
                any(_private(p) for p in parts[1:]) or any(_private(a.name) for a in node.names)
            ):
                names = ", ".join(a.name for a in node.names)
                found.append(f"{where}: from {node.module} import {names}")
    return found


def test_no_private_internals_outside_compat() -> None:
    found: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        if COMPAT in path.parents:
            continue
        found += violations(path.read_text(), str(path.relative_to(ROOT.parent)))
    assert not found, "private library internals outside wsmq/_compat/:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "request.protocol._payload_parser = None",
        "n = writer._output_size",
        "x = getattr(conn, '_parser', None)",
        "loop._selector",
        "import asyncio\nasyncio._get_running_loop()",
        "import redis._parsers.hiredis",
        "from redis._parsers.hiredis import NOT_ENOUGH_DATA",
        "from aiohttp.web_protocol import _ErrInfo",
        "from aiohttp import _websocket",
    ],
)
def test_each_kind_of_private_use_is_caught(code: str) -> None:
    assert violations(code, "planted.py")


@pytest.mark.parametrize(
    "code",
    [
        "self._x = 1",
        "cls._registry",
        "getattr(self, '_x', None)",
        "parts._replace(netloc='h')",
        "obj.__class__",
        "from wsmq._compat.redis_write import direct_write",
        "from . import _private",
        "import argparse\nx: argparse._SubParsersAction",
    ],
)
def test_own_members_and_compat_imports_are_allowed(code: str) -> None:
    assert not violations(code, "ok.py")

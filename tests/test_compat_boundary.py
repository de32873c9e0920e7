"""Private internals of aiohttp, redis-py and asyncio are reached only from ``wsmq/_compat/``.

Outside it, this test fails on ``x._name`` where ``x`` is not ``self``/``cls`` (attribute
access, or ``getattr``/``setattr``/``hasattr``/``delattr`` with a literal ``"_name"``), on
``self._name`` in a subclass of a library class that does not define ``_name`` itself, and on
imports of a private module or name of those libraries (``redis._parsers``, ``from
aiohttp.web_protocol import _ErrInfo``). Types are not known to an AST walk, so the project's
own private members are allowed: those a module defines itself (``self._x = ...`` or
``__slots__``), used by another class of the same module, and the few listed below.
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


def _own_privates(tree: ast.Module) -> set[str]:
    """Private members the module's own classes define (``self._x = ...``, ``__slots__``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if _owner(node.value) and _private(node.attr):
                names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str) and _private(c.value)
            )
    return names


def violations(source: str, filename: str) -> list[str]:
    """Each use of a library's private internals in ``source`` (``file:line: what``)."""
    found: list[str] = []
    tree = ast.parse(source, filename)
    allowed = ALLOWED_ATTRIBUTES | _own_privates(tree)
    # Modules imported whole that are none of the libraries (``argparse._SubParsersAction``
    # is the standard library's, used in type hints).
    other_modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] not in LIBRARIES
    }
    found += _inherited_privates(tree, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute):
            value = node.value
            if isinstance(value, ast.Name) and value.id in other_modules:
                continue
            if _private(node.attr) and not _owner(value):
                if node.attr not in allowed:
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
                    and name.value not in allowed
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


def _library_names(tree: ast.Module) -> set[str]:
    """Names bound by ``from <library>... import name`` (classes one may subclass)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
        if node.module.split(".")[0] in LIBRARIES
        for alias in node.names
    }


def _inherited_privates(tree: ast.Module, filename: str) -> list[str]:
    """``self._name`` in a subclass of a library class that the subclass never defines: a
    private member inherited from the library."""
    library = _library_names(tree)
    found: list[str] = []
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases}
        if not bases & library:
            continue
        own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        for node in ast.walk(cls):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets = [node.target]
            own |= {t.attr for t in targets if isinstance(t, ast.Attribute) and _owner(t.value)}
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                own |= {
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and _owner(node.value)
                and _private(node.attr)
                and node.attr not in own
            ):
                found.append(f"{filename}:{node.lineno}: inherited self.{node.attr}")
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
        "from redis.asyncio import ConnectionPool\n"
        "class P(ConnectionPool):\n    def f(self):\n        return self._available_connections",
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
        "from redis.asyncio import ConnectionPool\n"
        "class P(ConnectionPool):\n    def __init__(self):\n        self._n = 1\n"
        "    def _g(self):\n        return self._n + self._g()",
    ],
)
def test_own_members_and_compat_imports_are_allowed(code: str) -> None:
    assert not violations(code, "ok.py")

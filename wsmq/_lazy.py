"""Lazy package attributes: ``import wsmq`` stays cheap, a name's module loads on first use."""

from __future__ import annotations

from collections.abc import Mapping


def load_lazy(
    package: str, lazy: Mapping[str, str], namespace: dict[str, object], name: str
) -> object:
    """``name`` from the module ``lazy`` maps it to, kept in ``namespace`` (the package's
    globals) so the next lookup is direct; ``AttributeError`` for a name not in ``lazy``."""
    module_name = lazy.get(name)
    if module_name is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    namespace[name] = value
    return value

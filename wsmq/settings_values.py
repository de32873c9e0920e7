"""Turning a setting's raw value (flag or environment text, a TOML value) into its field's type.

Raw values are untyped input from outside, hence ``Any``; a value that does not fit raises
:class:`wsmq.errors.ConfigError` naming the setting.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from wsmq.errors import ConfigError

__all__ = ["base_type", "coerce"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def base_type(tp: Any) -> tuple[Any, bool]:
    """``(type, optional)`` for ``X`` or ``X | None``."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert strings (env, flags) and TOML values to the field's type, or raise."""
    base, optional = base_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(name, "is required")
    if optional and isinstance(value, str) and value == "":
        return None
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected true/false, got {value!r}")
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"expected an integer, got {value!r}")
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError(f"expected a number, got {value!r}")
            return float(value)
        if base is str:
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {value!r}")
            return value
        if typing.get_origin(base) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(item).strip() for item in items if str(item).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, str(exc)) from exc
    return value  # pragma: no cover - every field type is handled above

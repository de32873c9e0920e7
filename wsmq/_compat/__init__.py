"""The only code that touches private internals of aiohttp, redis-py or asyncio.

Each module here holds one such use and declares it as a :class:`FastPath`: the library, the
versions whose code was read for it, what private parts it touches, a probe, and the public-API
path taken when the probe fails or fast paths are switched off. :func:`fast_paths` lists them
all, :func:`enabled` names those in use.

One switch turns every *speed* fast path off, process-wide: ``WSMQ_FAST_PATHS=0`` in the
environment, or :func:`set_fast_paths` (``serve()`` calls it with the ``fast_paths`` setting).
Guards (``speed=False``: checks the public API cannot do, such as the pre-upgrade deadline or
the masked-frame check) are not behind the switch: turning them off would change behaviour,
not only speed; they still probe and fall back on versions not read.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import platform
from collections.abc import Callable
from importlib.metadata import version
from typing import Final, Literal

__all__ = [
    "ENV_SWITCH",
    "FastPath",
    "allowed",
    "enabled",
    "fast_paths",
    "register",
    "set_fast_paths",
]

#: Environment variable that, set to ``0``, turns every speed fast path off in this process.
ENV_SWITCH: Final = "WSMQ_FAST_PATHS"
_OFF: Final = frozenset({"0", "false", "no", "off"})

#: The modules that declare fast paths (imported by :func:`fast_paths`).
_MODULES: Final = (
    "aiohttp_release",
    "aiohttp_server",
    "aiohttp_ws",
    "redis_pool",
    "redis_pubsub",
    "redis_write",
)

Library = Literal["aiohttp", "redis", "asyncio"]


@dataclasses.dataclass(frozen=True, slots=True)
class FastPath:
    """One use of a library's private internals (see the module docstring)."""

    name: str
    library: Library
    #: Version prefixes whose code was read for it (``"3.14."``); empty: any version, the
    #: probe alone decides (an attribute-shape check of the installed library).
    verified: tuple[str, ...]
    #: The private parts it touches.
    touches: str
    #: What runs instead (public API only).
    fallback: str
    #: ``True`` when the installed library has the expected shape.
    probe: Callable[[], bool]
    #: ``False`` for a guard the switch leaves on (see the module docstring).
    speed: bool = True

    def version_ok(self) -> bool:
        """The installed library is one of :attr:`verified` (or none is required)."""
        if not self.verified:
            return True
        installed = (
            platform.python_version() if self.library == "asyncio" else version(self.library)
        )
        return installed.startswith(self.verified)

    def active(self) -> bool:
        """Taken now: allowed by the switch, a verified version, and the probe passes."""
        return (allowed() or not self.speed) and self.version_ok() and self.probe()


def _env_allows() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


_allowed = _env_allows()
_registry: dict[str, FastPath] = {}


def allowed() -> bool:
    """Whether speed fast paths may run in this process (the switch)."""
    return _allowed


def set_fast_paths(on: bool) -> None:
    """Turn speed fast paths on or off for this process; ``WSMQ_FAST_PATHS=0`` keeps them off.

    Takes effect for what is built afterwards (Redis clients, sockets).
    """
    global _allowed
    _allowed = on and _env_allows()


def register(path: FastPath) -> FastPath:
    """Declare ``path`` (called once by the module that holds it)."""
    _registry[path.name] = path
    return path


def fast_paths() -> list[FastPath]:
    """Every fast path and guard, by name."""
    for module in _MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return sorted(_registry.values(), key=lambda p: p.name)


def enabled() -> list[str]:
    """Names of the fast paths taken now."""
    return [p.name for p in fast_paths() if p.active()]

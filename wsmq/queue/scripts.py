"""Lua scripts: loaded from ``lua/*.lua`` once, run with EVALSHA, recovered after SCRIPT FLUSH.

RSMQ loads its scripts at connect time and fails with ``NOSCRIPT`` forever after a
``SCRIPT FLUSH`` or a Redis restart (rsmq issue #118).  Here every call tries ``EVALSHA`` and on
``NOSCRIPT`` runs the body once with ``EVAL``, which also puts it back into the script cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ..connections import AnyRedis
from .errors import error_from_reply

__all__ = ["SCRIPTS", "LuaScript", "run_script"]

EncodableArg = str | bytes | int | float


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script: its full source (prelude included) and SHA1."""

    name: str
    source: str
    sha: str


def _load() -> dict[str, LuaScript]:
    folder = resources.files(__package__).joinpath("lua")
    prelude = folder.joinpath("_prelude.lua").read_text(encoding="utf-8")
    scripts: dict[str, LuaScript] = {}
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".lua") or name.startswith("_"):
            continue
        source = prelude + "\n" + entry.read_text(encoding="utf-8")
        sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        scripts[name[:-4]] = LuaScript(name[:-4], source, sha)
    return scripts


SCRIPTS: dict[str, LuaScript] = _load()


async def run_script(
    client: AnyRedis, name: str, keys: Sequence[str], args: Sequence[EncodableArg] = ()
) -> Any:
    """Run script ``name`` with EVALSHA (EVAL once on NOSCRIPT); map our error replies.

    Raises the matching :class:`~wsmq.queue.errors.QueueError` for error replies produced by the
    scripts (``queueNotFound`` ...); other Redis errors propagate unchanged.
    """
    script = SCRIPTS[name]
    try:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(script.source, len(keys), *keys, *args)
    except ResponseError as exc:
        mapped = error_from_reply(str(exc))
        if mapped is not None:
            raise mapped from None
        raise

"""Helpers shared by the CLI subcommands: JSON output, typed errors, running coroutines."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1  # the operation failed (queue not found, Redis down, ...)
EXIT_USAGE = 2  # bad flags or arguments (argparse uses 2 as well)


class CliError(Exception):
    """An error reported to the user as one line (and as JSON with ``--json``)."""

    def __init__(self, code: str, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


def print_json(obj: Any) -> None:
    """Print one JSON object on one line (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion from synchronous CLI code."""

    async def _wrapper() -> T:
        return await coro

    return asyncio.run(_wrapper())

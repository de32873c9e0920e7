"""Helpers shared by the CLI subcommands: JSON output, typed errors, running coroutines.

Every failure of every command is reported the same way, by :func:`report_error`: one line
``wsmq <command>: error: <message>`` on stderr (argparse's own format, preceded by the usage
line for a usage error), or with ``--json`` one object ``{"error": <code>, "message": ...}`` on
stdout; exit code 2 for usage errors, 1 when the operation failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import Any, NoReturn, TypeVar

from wsmq.errors import WsmqError

T = TypeVar("T")

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1  # the operation failed (queue not found, Redis down, ...)
EXIT_USAGE = 2  # bad flags or arguments (argparse uses 2 as well)


class CliError(WsmqError, code="cli_error"):
    """An error reported to the user as one line (and as JSON with ``--json``).

    ``prog`` names the command (``wsmq queue stats``) when the raiser knows it better than the
    parsed arguments do (argparse errors); ``usage`` is printed before the line in text mode.
    """

    def __init__(
        self,
        code: str,
        message: str,
        exit_code: int = EXIT_ERROR,
        *,
        prog: str | None = None,
        usage: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.exit_code = exit_code
        self.prog = prog
        self.usage = usage


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are :class:`CliError`, reported like every other error.

    Subcommand parsers are of this class too (argparse makes them of the parent's class); each
    records its ``prog`` as ``command_prog``, and the deepest subcommand's value wins.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(command_prog=self.prog)

    def error(self, message: str) -> NoReturn:
        raise CliError("usage", message, EXIT_USAGE, prog=self.prog, usage=self.format_usage())


def int_at_least(text: str, minimum: int) -> int:
    """``text`` as an integer ``>= minimum``, else the ``ArgumentTypeError`` argparse reports."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}: {text!r}")
    return value


def nonneg_int(text: str) -> int:
    """An argparse ``type``: an integer >= 0."""
    return int_at_least(text, 0)


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer >= 1."""
    return int_at_least(text, 1)


def report_error(exc: CliError, prog: str, *, as_json: bool) -> int:
    """Print ``exc`` in the one error format of every command; return its exit code."""
    if as_json:
        sys.stdout.write(json.dumps({"error": exc.code, "message": exc.message}) + "\n")
        sys.stdout.flush()
    else:
        if exc.usage:
            sys.stderr.write(exc.usage)
        sys.stderr.write(f"{exc.prog or prog}: error: {exc.message}\n")
    return exc.exit_code


def print_json(obj: object) -> None:
    """Print one JSON object on one line (the ``--json`` contract)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine to completion from synchronous CLI code."""

    async def _wrapper() -> T:
        return await coro

    return asyncio.run(_wrapper())

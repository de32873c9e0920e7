"""The ``wsmq`` command line.

Each group of subcommands lives in its own module and exposes ``register(subparsers)``; a
subcommand sets ``func(args) -> int`` on its parser. Settings come from flags, ``WSMQ_*``
environment variables (a flag's default) or a TOML file (``--config``) where a command says so.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from wsmq import __version__
from wsmq.cli.common import EXIT_ERROR, EXIT_USAGE, CliError

# Order is the order of `wsmq --help`.
_COMMAND_MODULES = (
    "wsmq.cli.serve_cmd",
    "wsmq.cli.queue_cmds",
    "wsmq.cli.user_cmds",
    "wsmq.cli.demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsmq",
        description=(
            "wsmq: durable Redis queues (RSMQ-compatible) delivered to authenticated "
            "WebSocket clients. Connection and server settings can also come from WSMQ_* "
            "environment variables (for example --redis-url and WSMQ_REDIS_URL); each "
            "command's --help names them."
        ),
    )
    parser.add_argument("--version", action="version", version=f"wsmq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except CliError as exc:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"error": exc.code, "message": exc.message}) + "\n")
        else:
            sys.stderr.write(f"wsmq: error: {exc.message} ({exc.code})\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, not a traceback
        sys.stderr.write(f"wsmq: error: {type(exc).__name__}: {exc}\n")
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

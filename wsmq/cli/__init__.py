"""The ``wsmq`` command line.

Each group of subcommands lives in its own module and exposes ``register(subparsers)``; a
subcommand sets ``func(args) -> int`` on its parser. Settings come from flags, ``WSMQ_*``
environment variables (a flag's default) or a TOML file (``--config``) where a command says so.
Errors, from argparse or from a command, are all printed by
:func:`wsmq.cli.common.report_error`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from wsmq import __version__
from wsmq.cli.common import EXIT_USAGE, ArgumentParser, CliError, report_error

# Order is the order of `wsmq --help`.
_COMMAND_MODULES = (
    "wsmq.cli.serve_cmd",
    "wsmq.cli.queue_cmds",
    "wsmq.cli.group_cmds",
    "wsmq.cli.user_cmds",
    "wsmq.cli.apikey_cmds",
    "wsmq.cli.demo_cmd",
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    prog, as_json = parser.prog, "--json" in argv  # until the arguments are parsed
    try:
        args, extra = parser.parse_known_args(argv)
        prog, as_json = args.command_prog, bool(getattr(args, "json", False))
        if extra:  # named here so the message names the subcommand, not just `wsmq`
            message = f"unrecognized arguments: {' '.join(extra)} (see {prog} --help)"
            raise CliError("usage", message, EXIT_USAGE)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help()
            return EXIT_USAGE
        return int(func(args))
    except CliError as exc:
        return report_error(exc, prog, as_json=as_json)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, not a traceback
        error = CliError("internal_error", f"{type(exc).__name__}: {exc}")
        return report_error(error, prog, as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

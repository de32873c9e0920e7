"""``wsmq serve``: run one gateway node until SIGTERM/SIGINT, then shut down gracefully.

SIGHUP asks for a restart: the node shuts down the same way but closes its sockets with 1012
(service restart) and exits with :data:`EXIT_RESTART`, for a supervisor to start it again.

Every :class:`~wsmq.settings.Settings` field is a flag (``--redis-url``), a ``WSMQ_*``
environment variable (``WSMQ_REDIS_URL``) and a key of the ``--config`` TOML file; flags win
over the environment, which wins over the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Final

from wsmq.cli.common import EXIT_OK, CliError, print_json
from wsmq.settings import ENV_PREFIX, GROUPS, Settings, SettingsError, type_label

__all__ = ["EXIT_RESTART", "register", "settings_from_args"]

#: Exit status after SIGHUP (EX_TEMPFAIL): "restart me", also for ``Restart=on-failure``.
EXIT_RESTART: Final = 75


_DEFAULTS = Settings()


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Settings):
        group_name = str(f.metadata.get("group", "server"))
        group = groups.get(group_name)
        if group is None:
            group = groups[group_name] = parser.add_argument_group(GROUPS[group_name])
        flag = "--" + f.name.replace("_", "-")
        default = getattr(_DEFAULTS, f.name)
        shown = ",".join(default) if isinstance(default, tuple) else default
        default_text = "" if default in (None, ()) else f" [default: {shown}]"
        help_text = f"{f.metadata['help']}{default_text} (env {ENV_PREFIX}{f.name.upper()})"
        label = type_label(f.name)
        if label == "bool":
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                help=help_text,
            )  # fmt: skip
        else:
            metavar = {"int": "N", "float": "N", "list": "A,B"}.get(label.split()[0], None)
            group.add_argument(flag, dest=f.name, default=None, metavar=metavar, help=help_text)


def settings_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from parsed flags, ``WSMQ_*`` environment variables and ``--config``."""
    flags = {name: getattr(args, name, None) for name in Settings.field_names()}
    env = os.environ if env is None else env
    config = getattr(args, "config", None) or env.get(ENV_PREFIX + "CONFIG")
    try:
        return Settings.from_sources(flags, env=env, toml_path=config)
    except SettingsError as exc:
        raise CliError("invalid_setting", str(exc), 2) from exc


def _check_required(settings: Settings) -> None:
    if not (
        settings.secret
        or settings.public_key_file
        or settings.private_key_file
        or settings.jwks_url
    ):
        raise CliError(
            "usage", "--secret S (or WSMQ_SECRET; or key files, or --jwks-url) is required", 2
        )
    if not (settings.mongo_url or settings.users_file):
        raise CliError("usage", "a user store is needed: --mongo-url URL or --users-file F", 2)
    if settings.mongo_url and settings.users_file:
        raise CliError("usage", "give either --mongo-url or --users-file, not both", 2)


def start_error(exc: OSError | ValueError, settings: Settings) -> CliError:
    """The error for a node that could not start; a listening failure names host and port."""
    where = f"{settings.host}:{settings.port}"
    code = exc.errno if isinstance(exc, OSError) else None
    if code == errno.EADDRINUSE:
        return CliError(
            "port_in_use",
            f"cannot listen on {where}: the port is in use by another process "
            "(pick another --port, or stop that process)",
        )
    if code == errno.EADDRNOTAVAIL:
        return CliError("start_failed", f"cannot listen on {where}: no such local address")
    return CliError("start_failed", str(exc))


def _check_users_file(settings: Settings, create: bool) -> None:
    """A users file that does not exist is a typo more often than a fresh install: refuse it
    (one clear line, exit 2) unless ``--create-users-file`` says to start with no users."""
    if settings.mongo_url or not settings.users_file:
        return
    path = Path(settings.users_file)
    if path.exists():
        return
    if not create:
        raise CliError(
            "users_file_missing",
            f"users file {path} does not exist: add users with `wsmq user add --users-file "
            f"{path} NAME`, or pass --create-users-file to start with none",
            2,
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # hashes go in here
    except FileExistsError:  # created meanwhile (another node): fine
        return
    except OSError as exc:
        raise CliError("users_file_missing", f"cannot create users file {path}: {exc}", 2) from exc
    from wsmq.auth.file_store import FORMAT_VERSION

    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"version": FORMAT_VERSION, "users": []}) + "\n")
    logging.getLogger("wsmq.gateway").info("created empty users file %s", path)


async def _run(settings: Settings, json_output: bool) -> int:
    from wsmq.gateway import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    restart = False

    def on_restart() -> None:
        nonlocal restart
        restart = True
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_restart)
    try:
        gateway = await serve(settings=settings)
    except (OSError, ValueError) as exc:
        raise start_error(exc, settings) from exc
    if settings.gc_tuning:
        tune_gc()
    ready = {"event": "listening", "url": gateway.url, "port": gateway.port, "pid": os.getpid()}
    if json_output:
        print_json(ready)
    else:
        sys.stdout.write(f"wsmq: listening on {gateway.url} (pid {os.getpid()})\n")
        sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        # A second signal during shutdown cuts it short (the default handlers come back).
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await gateway.close(restart=restart)
    return EXIT_RESTART if restart else EXIT_OK


#: Allocations between two young-generation collections of ``wsmq serve`` (CPython: 700).
GC_YOUNG_THRESHOLD: Final = 10_000


def tune_gc() -> None:
    """Make the garbage collector cheaper for a node (``gc_tuning``; the process is ours).

    A node's objects live as long as their sockets: what a handshake allocates mostly
    survives, so every collection walks it, and each full one also walks the whole start-up
    heap (modules, classes, functions). Frozen, the start-up heap is never walked again;
    young collections every 10,000 allocations instead of 700 cut their count 14-fold (the
    older generations follow them: CPython's own ratios are kept). Measured in
    docs/performance.md, round 6.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def _cmd_serve(args: argparse.Namespace) -> int:
    from wsmq.logs import configure_logging

    settings = settings_from_args(args)
    _check_required(settings)
    configure_logging(settings.log_level, json=settings.log_json)
    # wsmq's formatters print no thread, process or multiprocessing name: the logging HOWTO's
    # flags skip looking them up for every record (a line per connection; the process is ours).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _check_users_file(settings, bool(args.create_users_file))
    try:
        import uvloop

        runner: Callable[[Coroutine[object, object, int]], int] = uvloop.run
    except ImportError:  # optional speed-up
        runner = asyncio.run
    return int(runner(_run(settings, bool(args.json))))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``wsmq serve``."""
    parser = subparsers.add_parser(
        "serve",
        help="run a gateway node",
        description=(
            "Run a wsmq gateway node: WebSocket endpoint, delivery from Redis queues, auth "
            "endpoints, /healthz, /readyz and /metrics. SIGTERM or SIGINT shuts down "
            "gracefully (in-flight messages released, sockets closed with 1001, exit 0); "
            "SIGHUP does the same with 1012 (restarting) and exits 75 for a supervisor to "
            "restart the node. Every "
            "setting is also a WSMQ_* environment variable and a key of --config FILE.toml. "
            "Reference: docs/configuration.md."
        ),
    )
    parser.add_argument(
        "--config", metavar="FILE.toml", default=None, help="TOML settings file (env WSMQ_CONFIG)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the listening line as one JSON object"
    )
    parser.add_argument(
        "--create-users-file",
        action="store_true",
        help="create an empty --users-file if it does not exist (else that is an error)",
    )
    _add_settings_flags(parser)
    parser.set_defaults(func=_cmd_serve)

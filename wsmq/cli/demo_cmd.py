"""``wsmq demo``: one command that starts a private stack and the browser page."""

from __future__ import annotations

import argparse
import asyncio
import os

from wsmq.cli.common import CliError


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not (value == 0 or 1024 <= value <= 65533):
        raise argparse.ArgumentTypeError("the port must be 0 (any free ports) or 1024..65533")
    return value


def _ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 5 <= value <= 86400:
        raise argparse.ArgumentTypeError("the token lifetime must be 5..86400 seconds")
    return value


def _demo(args: argparse.Namespace) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from wsmq.demo import PortInUse, run_demo
    from wsmq.testing.nodes import NodeStartError
    from wsmq.testing.redisproc import RedisProcessError

    try:
        return asyncio.run(
            run_demo(
                port=args.port,
                redis_url=args.redis_url,
                token_ttl=args.token_ttl,
                as_json=args.json,
                out=lambda text: print(text, flush=True),
            )
        )
    except RedisProcessError as exc:
        raise CliError("redis_unavailable", str(exc)) from exc
    except RedisConnectionError as exc:  # --redis-url points nowhere
        raise CliError("redis_unavailable", f"cannot reach {args.redis_url}: {exc}") from exc
    except PortInUse as exc:
        raise CliError("port_in_use", str(exc)) from exc
    except NodeStartError as exc:
        raise CliError("node_failed", str(exc)) from exc
    except OSError as exc:  # e.g. the page port is taken
        raise CliError("start_failed", f"{exc.strerror or exc}") from exc


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``wsmq demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="start a private demo stack: Redis, two nodes, demo users, a browser page",
        description=(
            "Start a private redis-server, two wsmq nodes on PORT and PORT+1 and the browser "
            "page on PORT+2, with two demo users (alice, bob). Everything binds 127.0.0.1 and "
            "stops on Ctrl-C."
        ),
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=_port(os.environ.get("WSMQ_DEMO_PORT", "8080")),
        help="first port: nodes on PORT and PORT+1, page on PORT+2; 0 picks free ports "
        "(default 8080, env WSMQ_DEMO_PORT)",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help="use this Redis instead of starting a private one (nothing is flushed)",
    )
    parser.add_argument(
        "--token-ttl",
        type=_ttl,
        default=None,
        help="lifetime (s) of x-tokens, to watch the page refresh them (default 900)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (page, nodes, users with passwords and ids) when ready",
    )
    parser.set_defaults(func=_demo)

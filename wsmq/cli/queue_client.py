"""The Redis side of the queue commands: connection flags, opening the queues under the
``--timeout`` budget, and one-line CLI errors for queue and Redis failures."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.exceptions

from wsmq.cli.common import EXIT_USAGE, CliError
from wsmq.queue import QueueError, Queues
from wsmq.queue.errors import DeadLetterQueueNotFound, InvalidFormat, QueueNotFound

__all__ = [
    "DEFAULT_NS",
    "DEFAULT_REDIS_URL",
    "DEFAULT_TIMEOUT",
    "connection_options",
    "queue_error",
    "redact_url",
    "with_queues",
]

T = TypeVar("T")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_NS = "rsmq"
DEFAULT_TIMEOUT = 10.0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def redact_url(url: str) -> str:
    """Hide the password of a Redis URL so it can appear in an error message."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable url>"


def connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--redis-url",
        metavar="URL",
        default=os.environ.get("WSMQ_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis URL (redis://, rediss://, unix://); env WSMQ_REDIS_URL; "
        f"default {DEFAULT_REDIS_URL}",
    )
    parent.add_argument(
        "--ns",
        metavar="NS",
        default=os.environ.get("WSMQ_NS", DEFAULT_NS),
        help=f"RSMQ key namespace; env WSMQ_NS; default {DEFAULT_NS!r}",
    )
    parent.add_argument(
        "--timeout",
        metavar="S",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"give up after this many seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parent.add_argument("--json", action="store_true", help="print one JSON object")
    return parent


async def with_queues(args: argparse.Namespace, action: Callable[[Queues], Awaitable[T]]) -> T:
    """Open the queues on ``--redis-url``, run ``action``, close; map errors to CLI errors."""
    url: str = args.redis_url
    try:
        queues = Queues.from_url(url, ns=args.ns, realtime=True)
    except ValueError as exc:
        message = f"invalid Redis URL {redact_url(url)}: {exc}"
        raise CliError("invalid_url", message, EXIT_USAGE) from exc
    try:
        async with asyncio.timeout(args.timeout):
            return await action(queues)
    except QueueError as exc:
        if isinstance(exc.__cause__, redis.exceptions.ConnectionError):
            raise _unavailable(url, exc.__cause__) from exc
        raise queue_error(exc, args) from exc
    except TimeoutError as exc:  # the --timeout budget ran out (before OSError: a subclass)
        raise CliError(
            "redis_unavailable", f"no answer from Redis at {redact_url(url)} in {args.timeout:g}s"
        ) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise _unavailable(url, exc) from exc
    except redis.exceptions.RedisError as exc:
        raise CliError("redis_error", f"Redis error: {exc}") from exc
    finally:
        # Closing must not hang either (the pool may hold a half-dead connection).
        try:
            async with asyncio.timeout(2.0):
                await queues.close()
        except (TimeoutError, OSError, redis.exceptions.RedisError):
            pass


def queue_error(exc: QueueError, args: argparse.Namespace) -> CliError:
    """RSMQ's error name as the code; the message names the queue and what to do about it."""
    qname: str | None = getattr(args, "qname", None)
    dlq: str | None = getattr(args, "dead_letter_queue", None)
    about_dlq = isinstance(exc, DeadLetterQueueNotFound) or (
        isinstance(exc, InvalidFormat) and exc.item == "dead_letter_queue"
    )
    message = exc.describe(dlq if about_dlq and dlq else qname)
    if type(exc) is QueueNotFound and qname:
        create = f"`wsmq queue create {qname}`"
        # Only `send` has --create.
        hint = f"{create} or pass --create" if hasattr(args, "create") else create
        message += f": create it with {hint}"
    return CliError(exc.name, message)


def _unavailable(url: str, exc: BaseException) -> CliError:
    reason = str(exc) or type(exc).__name__
    return CliError("redis_unavailable", f"cannot reach Redis at {redact_url(url)}: {reason}")

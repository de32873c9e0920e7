"""``wsmq send``, ``wsmq receive`` and ``wsmq queue (create|list|stats|set|delete)``.

Every command talks to Redis through :class:`wsmq.queue.Queues` with RSMQ's key layout, so it
works on queues written by the npm ``rsmq`` package as well. Errors are one line (one JSON
object with ``--json``) whose code is RSMQ's error name (``queueNotFound``, ``invalidValue``,
...) or ``redis_unavailable``; the whole command is bounded by ``--timeout``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from wsmq.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    nonneg_int,
    positive_int,
    print_json,
    run,
)
from wsmq.cli.queue_client import connection_options, with_queues
from wsmq.protocol.names import RESERVED_QNAMES
from wsmq.queue import Message, QueueAttributes, QueueError, Queues

_QNAME_HELP = f"queue name ([A-Za-z0-9_-], 1..160; reserved: {', '.join(sorted(RESERVED_QNAMES))})"


def _maxsize(text: str) -> int:
    # -1 means unlimited (RSMQ); the range 1024..65536 is checked by the queue layer.
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _message_dict(msg: Message) -> dict[str, object]:
    return {"id": msg.id, "message": msg.message, "rc": msg.rc, "fr": msg.fr, "sent": msg.sent}


def _read_message(arg: str) -> str:
    if arg == "-":
        data = sys.stdin.buffer.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CliError("invalid_input", f"stdin is not valid UTF-8: {exc}", EXIT_USAGE) from exc
    try:
        arg.encode("utf-8")  # argv bytes that were not UTF-8 arrive as lone surrogates
    except UnicodeEncodeError as exc:
        raise CliError("invalid_input", "MESSAGE is not valid UTF-8", EXIT_USAGE) from exc
    return arg


# --- send / receive -------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    """Send one message; print its id."""
    message = _read_message(args.message)

    async def action(queues: Queues) -> str:
        try:
            return await queues.send_message(args.qname, message, delay=args.delay)
        except QueueError as exc:
            if not (args.create and exc.name == "queueNotFound"):
                raise
        try:
            await queues.create_queue(args.qname)
        except QueueError as exc:
            if exc.name != "queueExists":  # another sender created it meanwhile
                raise
        return await queues.send_message(args.qname, message, delay=args.delay)

    msg_id = run(with_queues(args, action))
    if args.json:
        print_json({"id": msg_id})
    else:
        print(msg_id)
    return EXIT_OK


def cmd_receive(args: argparse.Namespace) -> int:
    """Receive up to ``--count`` messages in one round trip; optionally delete them."""

    async def action(queues: Queues) -> tuple[list[Message], int]:
        msgs = await queues.receive_messages(args.qname, args.count, vt=args.vt)
        deleted = 0
        if args.delete and msgs:
            deleted = await queues.delete_messages(args.qname, [m.id for m in msgs])
        return msgs, deleted

    msgs, deleted = run(with_queues(args, action))
    if args.json:
        out: dict[str, object] = {"messages": [_message_dict(m) for m in msgs]}
        if args.delete:
            out["deleted"] = deleted
        print_json(out)
    else:
        for m in msgs:
            print(f"{m.id} rc={m.rc} {m.message}")
        if not msgs:
            print("(no message)", file=sys.stderr)
    return EXIT_OK


# --- queue ... ------------------------------------------------------------------------------


def _queue_options(args: argparse.Namespace) -> dict[str, Any]:
    """The per-queue settings given on the command line (unset ones left out)."""
    names = ("vt", "delay", "maxsize", "max_receive_count", "dead_letter_queue", "message_ttl")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def cmd_queue_create(args: argparse.Namespace) -> int:
    """Create a queue (RSMQ defaults: vt 30 s, delay 0, maxsize 65536)."""
    options = _queue_options(args)

    async def action(queues: Queues) -> QueueAttributes:
        await queues.create_queue(args.qname, **options)
        return await queues.get_queue_attributes(args.qname)

    attrs = run(with_queues(args, action)).to_dict()
    if args.json:
        print_json({"queue": args.qname, "created": True, "attributes": attrs})
    else:
        print(f"created queue {args.qname}")
    return EXIT_OK


def cmd_queue_set(args: argparse.Namespace) -> int:
    """Change settings of an existing queue."""
    options = _queue_options(args)
    if not options:
        raise CliError("noAttributeSupplied", "No attribute was supplied", EXIT_USAGE)

    async def action(queues: Queues) -> QueueAttributes:
        return await queues.set_queue_attributes(args.qname, **options)

    attrs = run(with_queues(args, action)).to_dict()
    _print_attributes(args, attrs)
    return EXIT_OK


def cmd_queue_list(args: argparse.Namespace) -> int:
    """List queue names (sorted)."""
    names = sorted(run(with_queues(args, lambda q: q.list_queues())))
    if args.json:
        print_json({"queues": names})
    else:
        for name in names:
            print(name)
    return EXIT_OK


def _print_attributes(args: argparse.Namespace, attrs: dict[str, int | str | None]) -> None:
    if args.json:
        print_json({"queue": args.qname, **attrs})
    else:
        width = max((len(k) for k in attrs), default=0)
        print(f"{'queue'.ljust(width)}  {args.qname}")
        for key, value in attrs.items():
            print(f"{key.ljust(width)}  {'-' if value is None else value}")


def cmd_queue_stats(args: argparse.Namespace) -> int:
    """Print every attribute of a queue (RSMQ's getQueueAttributes plus wsmq's extras)."""
    attrs = run(with_queues(args, lambda q: q.get_queue_attributes(args.qname))).to_dict()
    _print_attributes(args, attrs)
    return EXIT_OK


def cmd_queue_delete(args: argparse.Namespace) -> int:
    """Delete a queue and all its messages (asks first unless ``--yes``)."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                "confirmation_required",
                f"deleting queue {args.qname} loses its messages: pass --yes",
                EXIT_USAGE,
            )
        answer = input(f"Delete queue {args.qname} and all its messages? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("aborted", "not deleted", EXIT_USAGE)
    run(with_queues(args, lambda q: q.delete_queue(args.qname)))
    if args.json:
        print_json({"queue": args.qname, "deleted": True})
    else:
        print(f"deleted queue {args.qname}")
    return EXIT_OK


def _add_queue_settings(parser: argparse.ArgumentParser, *, for_create: bool) -> None:
    def dflt(value: int) -> str:
        return f" (default {value})" if for_create else ""

    parser.add_argument(
        "--vt", metavar="S", type=nonneg_int, help="visibility timeout, seconds" + dflt(30)
    )
    parser.add_argument(
        "--delay", metavar="S", type=nonneg_int, help="delay of new messages, seconds" + dflt(0)
    )
    parser.add_argument(
        "--maxsize",
        metavar="N",
        type=_maxsize,
        help="max message length in UTF-16 units like RSMQ, 1024..65536 or -1" + dflt(65536),
    )
    parser.add_argument(
        "--max-receive-count",
        metavar="N",
        type=nonneg_int,
        help="receives after which a message moves to --dead-letter-queue",
    )
    parser.add_argument("--dead-letter-queue", metavar="QNAME", help="dead-letter queue name")
    parser.add_argument(
        "--message-ttl", type=nonneg_int, metavar="S", help="drop messages older than S seconds"
    )


def _command(
    parent: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    conn: argparse.ArgumentParser,
    *,
    help: str,
    description: str,
    qname: bool = True,
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` run by ``func``, with the connection options and, unless
    ``qname=False``, the QNAME argument."""
    p = parent.add_parser(name, parents=[conn], help=help, description=description)
    if qname:
        p.add_argument("qname", metavar="QNAME", help=_QNAME_HELP)
    p.set_defaults(func=func)
    return p


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``send``, ``receive`` and ``queue``."""
    conn = connection_options()

    p = _command(
        subparsers,
        "send",
        cmd_send,
        conn,
        help="send a message to a queue",
        description="Send MESSAGE to queue QNAME (MESSAGE '-' reads stdin, kept byte for byte).",
    )
    p.add_argument("message", metavar="MESSAGE", help="the message text, or - to read stdin")
    p.add_argument(
        "--delay", metavar="S", type=nonneg_int, help="seconds before it becomes visible"
    )
    p.add_argument("--create", action="store_true", help="create the queue if it does not exist")

    p = _command(
        subparsers,
        "receive",
        cmd_receive,
        conn,
        help="receive messages from a queue",
        description="Receive up to --count visible messages in one round trip. They stay in "
        "the queue, invisible for --vt seconds, unless --delete is given.",
    )
    p.add_argument(
        "--vt", metavar="S", type=nonneg_int, help="visibility timeout (default: the queue's)"
    )
    p.add_argument(
        "--count",
        metavar="N",
        type=positive_int,
        default=1,
        help="max messages, 1..1000 (default 1)",
    )
    p.add_argument("--delete", action="store_true", help="delete the received messages")

    queue = subparsers.add_parser(
        "queue",
        help="create, list, inspect, change, delete queues",
        description="Manage RSMQ-compatible queues (shared with the npm rsmq package).",
    )
    sub = queue.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    p = _command(
        sub,
        "create",
        cmd_queue_create,
        conn,
        help="create a queue",
        description="Create queue QNAME with RSMQ's defaults (vt 30 s, delay 0, maxsize 65536) "
        "or the settings given; fails with queueExists if it exists.",
    )
    _add_queue_settings(p, for_create=True)

    p = _command(
        sub,
        "list",
        cmd_queue_list,
        conn,
        help="list queues",
        description="Print the names of all queues in the namespace (--ns), sorted.",
        qname=False,
    )

    p = _command(
        sub,
        "stats",
        cmd_queue_stats,
        conn,
        help="show every attribute of a queue",
        description="Print every attribute of queue QNAME: RSMQ's (vt, delay, maxsize, "
        "totalrecv, totalsent, created, modified, msgs, hiddenmsgs) and wsmq's extras.",
    )

    p = _command(
        sub,
        "set",
        cmd_queue_set,
        conn,
        help="change settings of a queue",
        description="Change settings of the existing queue QNAME; settings not given keep "
        "their values.",
    )
    _add_queue_settings(p, for_create=False)

    p = _command(
        sub,
        "delete",
        cmd_queue_delete,
        conn,
        help="delete a queue and its messages",
        description="Delete queue QNAME and all its messages. Asks for confirmation on a "
        "terminal; elsewhere --yes is required.",
    )
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

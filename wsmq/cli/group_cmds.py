"""``wsmq group (add|remove|list|members|delete|copy)``: groups (durable broadcast).

A group is a queue whose messages are copied into every member queue (docs/delivery.md,
"Groups"); publish to it with ``wsmq send GROUP MESSAGE`` like to any queue.  Same connection
options, errors and ``--json`` conventions as the queue commands (docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from wsmq.cli.common import EXIT_OK, EXIT_USAGE, CliError, print_json, run
from wsmq.cli.queue_client import connection_options, with_queues
from wsmq.queue import Queues

_GROUP_HELP = "group name (a queue name: [A-Za-z0-9_-], 1..160)"


def cmd_add(args: argparse.Namespace) -> int:
    """Add members (creating the group if needed)."""

    async def action(queues: Queues) -> tuple[int, list[str]]:
        added = await queues.groups.add(args.group, *args.queues)
        return added, await queues.groups.members(args.group)

    added, members = run(with_queues(args, action))
    if args.json:
        print_json({"group": args.group, "added": added, "members": members})
    else:
        print(f"group {args.group}: {added} added, members: {' '.join(members) or '(none)'}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    """Remove members (the group stays)."""

    async def action(queues: Queues) -> tuple[int, list[str]]:
        removed = await queues.groups.remove(args.group, *args.queues)
        return removed, await queues.groups.members(args.group)

    removed, members = run(with_queues(args, action))
    if args.json:
        print_json({"group": args.group, "removed": removed, "members": members})
    else:
        print(f"group {args.group}: {removed} removed, members: {' '.join(members) or '(none)'}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """List group names (sorted)."""
    names = run(with_queues(args, lambda q: q.groups.names()))
    if args.json:
        print_json({"groups": names})
    else:
        for name in names:
            print(name)
    return EXIT_OK


def cmd_members(args: argparse.Namespace) -> int:
    """List a group's member queues (sorted)."""
    members = run(with_queues(args, lambda q: q.groups.members(args.group)))
    if args.json:
        print_json({"group": args.group, "members": members})
    else:
        for name in members:
            print(name)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    """Delete a group and its messages not copied yet (asks first unless ``--yes``)."""
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(
                "confirmation_required",
                f"deleting group {args.group} loses its messages not copied yet: pass --yes",
                EXIT_USAGE,
            )
        answer = input(f"Delete group {args.group} and its messages not copied yet? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise CliError("aborted", "not deleted", EXIT_USAGE)
    run(with_queues(args, lambda q: q.groups.delete(args.group)))
    if args.json:
        print_json({"group": args.group, "deleted": True})
    else:
        print(f"deleted group {args.group}")
    return EXIT_OK


def cmd_copy(args: argparse.Namespace) -> int:
    """Copy every visible group message into its members once (no gateway node needed)."""
    from wsmq.engine.group_copier import GroupCopier

    async def action(queues: Queues) -> int:
        return await GroupCopier(queues).run_once()

    copies = run(with_queues(args, action))
    if args.json:
        print_json({"copies": copies})
    else:
        print(f"{copies} copies stored")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``group``."""
    conn = connection_options()
    group = subparsers.add_parser(
        "group",
        help="groups: a message sent to a group is copied into every member queue",
        description="Manage groups (durable broadcast). A group is a queue: send to it with "
        "`wsmq send GROUP MESSAGE` (or any RSMQ publisher); every running gateway node copies "
        "each of its messages into every member queue, exactly once per member.",
    )
    sub = group.add_subparsers(dest="group_command", metavar="ACTION", required=True)

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help: str, description: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[conn], help=help, description=description)
        p.set_defaults(func=func)
        return p

    p = command(
        "add",
        cmd_add,
        "add member queues (creates the group)",
        "Add the existing queues QNAME... to GROUP, creating GROUP (a queue with RSMQ's "
        "defaults) if it does not exist. A group cannot be a member.",
    )
    p.add_argument("group", metavar="GROUP", help=_GROUP_HELP)
    p.add_argument("queues", metavar="QNAME", nargs="*", help="member queue names")

    p = command(
        "remove",
        cmd_remove,
        "remove member queues",
        "Remove QNAME... from GROUP; their copies stay, the group stays.",
    )
    p.add_argument("group", metavar="GROUP", help=_GROUP_HELP)
    p.add_argument("queues", metavar="QNAME", nargs="+", help="member queue names")

    command("list", cmd_list, "list groups", "Print the names of all groups, sorted.")

    p = command("members", cmd_members, "list a group's members", "Print GROUP's members.")
    p.add_argument("group", metavar="GROUP", help=_GROUP_HELP)

    p = command(
        "delete",
        cmd_delete,
        "delete a group",
        "Delete GROUP and its messages not copied yet (members and their copies stay). Asks "
        "for confirmation on a terminal; elsewhere --yes is required.",
    )
    p.add_argument("group", metavar="GROUP", help=_GROUP_HELP)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    command(
        "copy",
        cmd_copy,
        "copy waiting group messages into members once",
        "Copy every visible message of every group into its members now, once (what a "
        "gateway node does continuously): for publishers without a running node.",
    )

"""``wsmq apikey (add|list|revoke)``: the keys of the HTTP API (``/api/``, docs/api.md).

Keys live beside the users, in the same store as ``wsmq serve``'s (``--mongo-url``: collection
``apikeys``; ``--users-file``: the file's ``"apikeys"`` section), stored as SHA-256 hashes: a
key is shown once, by ``add``. Nodes see a new or revoked key within two seconds.
"""

from __future__ import annotations

import argparse

from wsmq.auth import UserStore
from wsmq.auth.apikeys import SCOPES, ApiKey, api_key_store
from wsmq.cli.common import EXIT_OK, print_json, run

# The user commands' store flags and store handling: API keys live in the same store.
from wsmq.cli.user_cmds import _finish_command, _with_store


def cmd_apikey_add(args: argparse.Namespace) -> int:
    async def action(store: UserStore) -> tuple[ApiKey, str]:
        return await api_key_store(store).add(args.name, args.scopes)

    record, key = run(_with_store(args, action, create=True))
    if args.json:
        print_json({"name": record.name, "key": key, "scopes": list(record.scopes)})
    else:
        print(f"created API key {record.name} (scopes {','.join(record.scopes)})")
        print(f"key (shown only now): {key}")
    return EXIT_OK


def cmd_apikey_list(args: argparse.Namespace) -> int:
    async def action(store: UserStore) -> list[ApiKey]:
        return await api_key_store(store).list()

    keys: list[ApiKey] = run(_with_store(args, action))
    if args.json:
        print_json({"apikeys": [k.public_json() for k in keys]})
    else:
        for k in keys:
            print(f"{k.name}  scopes={','.join(k.scopes)}  created={k.created}")
    return EXIT_OK


def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    async def action(store: UserStore) -> None:
        await api_key_store(store).revoke(args.name)

    run(_with_store(args, action))
    if args.json:
        print_json({"name": args.name, "revoked": True})
    else:
        print(f"API key {args.name} revoked")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``wsmq apikey ...``."""
    parser = subparsers.add_parser(
        "apikey",
        help="manage the HTTP API's keys (add, list, revoke)",
        description="Manage the keys of the HTTP API (/api/), kept hashed in the user store "
        "(--mongo-url or --users-file).",
    )
    sub = parser.add_subparsers(dest="apikey_command", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add",
        help="create a key and print it once",
        description="Create API key NAME with the given scopes and print the key (shown only "
        "now). Creates the users file if it does not exist.",
    )
    add.add_argument("name", metavar="NAME", help="key name: letters, digits, '_', '-', '.'")
    add.add_argument(
        "--scopes",
        required=True,
        help=f"what it may do, comma-separated: {','.join(SCOPES)}",
    )
    _finish_command(add, cmd_apikey_add, "store (one of)")
    lst = sub.add_parser(
        "list", help="list keys (no secrets)", description="List every key: name, scopes, created."
    )
    _finish_command(lst, cmd_apikey_list, "store (one of)")
    revoke = sub.add_parser(
        "revoke",
        help="delete a key",
        description="Delete API key NAME: every node refuses it within two seconds.",
    )
    revoke.add_argument("name", metavar="NAME", help="key name")
    _finish_command(revoke, cmd_apikey_revoke, "store (one of)")

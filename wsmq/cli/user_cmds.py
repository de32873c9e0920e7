"""``wsmq user (add|list|disable|enable|passwd)`` and ``wsmq token``.

User commands work on the same store as ``wsmq serve`` (``--mongo-url`` or ``--users-file``), so
they may run while nodes are up: nodes re-read the users file when it changes. ``user disable``
and ``user passwd`` revoke at once on every node when given ``--redis-url``. Only ``user add``
creates a missing users file; the other commands report it missing.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from wsmq.auth import (
    AuthConfig,
    PasswordHasher,
    RevocationBus,
    User,
    UserStore,
    UserStoreError,
    issue_jwt,
    open_user_store,
)
from wsmq.auth.tokens import cli_safe_token
from wsmq.cli.common import EXIT_OK, CliError, positive_int, print_json, run

T = TypeVar("T")

DEFAULT_NS = "rsmq"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _add_store_flags(parser: argparse.ArgumentParser, title: str = "user store (one of)") -> None:
    group = parser.add_argument_group(title)
    group.add_argument(
        "--mongo-url",
        default=_env("WSMQ_MONGO_URL"),
        help="MongoDB URL; users in collection 'users' (env WSMQ_MONGO_URL)",
    )
    group.add_argument(
        "--mongo-database",
        default=_env("WSMQ_MONGO_DATABASE"),
        help="MongoDB database (default: the URL's, else 'wsmq'; env WSMQ_MONGO_DATABASE)",
    )
    group.add_argument(
        "--users-file",
        default=_env("WSMQ_USERS_FILE"),
        help="JSON users file (env WSMQ_USERS_FILE)",
    )


def _add_password_flags(parser: argparse.ArgumentParser) -> None:
    pw = parser.add_mutually_exclusive_group()
    pw.add_argument("--password", help="the password (else prompted, or generated and printed)")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")


def _finish_command(
    parser: argparse.ArgumentParser,
    func: Callable[[argparse.Namespace], int],
    store_title: str = "user store (one of)",
) -> None:
    """The flags every user command ends with (user store, ``--json``); ``func`` runs it."""
    _add_store_flags(parser, store_title)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=func)


def _open_store(args: argparse.Namespace, *, create: bool = False) -> UserStore:
    """The store named by the flags; a users file must exist unless ``create``."""
    if args.mongo_url and args.users_file:
        raise CliError("usage", "give either --mongo-url or --users-file, not both", 2)
    if not (args.mongo_url or args.users_file):
        raise CliError("usage", "a user store is needed: --mongo-url URL or --users-file F", 2)
    if args.users_file and not create and not Path(args.users_file).exists():
        raise CliError(
            "users_file_missing",
            f"users file {args.users_file} does not exist: `wsmq user add NAME --users-file "
            f"{args.users_file}` creates it",
        )
    n = _env("WSMQ_SCRYPT_N")
    hasher = PasswordHasher(n=int(n)) if n else None
    try:
        return open_user_store(
            mongo_url=args.mongo_url,
            users_file=args.users_file,
            database=args.mongo_database,
            password_hasher=hasher,
        )
    except UserStoreError as exc:
        raise CliError(exc.code, str(exc)) from None


async def _with_store(
    args: argparse.Namespace, action: Callable[[UserStore], Awaitable[T]], *, create: bool = False
) -> T:
    store = _open_store(args, create=create)
    try:
        return await action(store)
    except UserStoreError as exc:
        raise CliError(exc.code, str(exc)) from None
    finally:
        await store.close()


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password and whether it was generated (then it is printed once)."""
    if args.password:
        return args.password, False
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if sys.stdin.isatty() and not args.json:
        first = getpass.getpass("Password (empty to generate one): ")
        if first:
            if getpass.getpass("Repeat password: ") != first:
                raise CliError("password_mismatch", "the passwords differ")
            return first, False
    return cli_safe_token(18), True  # shown once; may be typed after `--password`


def cmd_user_add(args: argparse.Namespace) -> int:
    password, generated = _password(args)
    if not password:
        raise CliError("invalid_user_data", "the password must not be empty")

    async def action(store: UserStore) -> tuple[User, str]:
        return await store.create(args.name, password, args.queues or (), args.publish or ())

    user, access_token = run(_with_store(args, action, create=True))
    out: dict[str, object] = {
        "id": user.id,
        "userName": user.user_name,
        "accessToken": access_token,
    }
    if generated:
        out["password"] = password
    if args.json:
        print_json(out)
    else:
        print(f"created user {user.user_name} (id {user.id})")
        print(f"access token (shown only now): {access_token}")
        if generated:
            print(f"generated password (shown only now): {password}")
    return EXIT_OK


def cmd_user_list(args: argparse.Namespace) -> int:
    async def action(store: UserStore) -> list[User]:
        return await store.list()

    users: list[User] = run(_with_store(args, action))
    if args.json:
        print_json({"users": [u.public_json() for u in users]})
    else:
        for u in users:
            flags = " (disabled)" if u.disabled else ""
            print(
                f"{u.id}  {u.user_name}{flags}  queues={','.join(u.queues) or '-'}"
                f"  publish={','.join(u.publish) or '-'}"
            )
    return EXIT_OK


async def _find(store: UserStore, args: argparse.Namespace, name: str) -> User:
    user = await store.get_by_name(name) or await store.get(name)
    if user is None:
        where = f"users file {args.users_file}" if args.users_file else "MongoDB"
        raise CliError(
            "user_not_found",
            f"no user named {name!r} (nor with that id) in {where}: `wsmq user list` lists them",
        )
    return user


async def _publish_revocation(args: argparse.Namespace, user: User) -> int | None:
    """Tell every node to drop the user's sockets (None without ``--redis-url``)."""
    if not args.redis_url:
        return None
    bus = RevocationBus(args.redis_url, ns=args.ns)
    try:
        return await bus.revoke(user.id)
    except Exception as exc:
        raise CliError(
            "redis_unavailable",
            f"the store is updated, but the revocation could not be published: {exc}",
        ) from None
    finally:
        await bus.aclose()


def _change_user(
    args: argparse.Namespace,
    change: Callable[[UserStore, User], Awaitable[None]],
    *,
    revoke: bool,
) -> tuple[User, int | None]:
    """Find user NAME and ``change`` it; with ``revoke``, also tell the nodes (how many heard)."""

    async def action(store: UserStore) -> tuple[User, int | None]:
        user = await _find(store, args, args.name)
        await change(store, user)
        return user, (await _publish_revocation(args, user) if revoke else None)

    return run(_with_store(args, action))


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    user, receivers = _change_user(
        args, lambda store, user: store.set_disabled(user.id, disabled), revoke=disabled
    )
    if args.json:
        out: dict[str, object] = {"id": user.id, "userName": user.user_name, "disabled": disabled}
        if disabled:
            out["revokedOn"] = receivers
        print_json(out)
    else:
        state = "disabled" if disabled else "enabled"
        extra = f"; revocation heard by {receivers} node(s)" if receivers is not None else ""
        print(f"user {user.user_name} {state}{extra}")
    return EXIT_OK


def cmd_user_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_user_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_user_passwd(args: argparse.Namespace) -> int:
    password, generated = _password(args)
    if not password:
        raise CliError("invalid_user_data", "the password must not be empty")
    # set_password also revokes the access token: the nodes drop the user's sockets
    user, receivers = _change_user(
        args, lambda store, user: store.set_password(user.id, password), revoke=True
    )
    if args.json:
        out: dict[str, object] = {"id": user.id, "userName": user.user_name, "revokedOn": receivers}
        if generated:
            out["password"] = password
        print_json(out)
    else:
        print(f"password of {user.user_name} changed; its access token is revoked")
        if generated:
            print(f"generated password (shown only now): {password}")
    return EXIT_OK


async def _token_subject(args: argparse.Namespace) -> str:
    """The user id to sign for: checked against the store when one is given."""
    if not (args.mongo_url or args.users_file):
        return str(args.user)

    async def action(store: UserStore) -> str:
        user = await _find(store, args, args.user)
        if user.disabled:
            raise CliError("user_disabled", f"user {user.user_name!r} is disabled")
        return user.id

    return str(await _with_store(args, action))


def cmd_token(args: argparse.Namespace) -> int:
    if not args.secret and not args.private_key_file:
        raise CliError("usage", "a signing key is needed: --secret S (or WSMQ_SECRET)", 2)
    user_id = run(_token_subject(args))
    try:
        config = AuthConfig(
            secret=args.secret,
            algorithm=args.algorithm,
            ttl=args.ttl,
            issuer=args.issuer,
            audience=args.audience,
            private_key_file=args.private_key_file,
        )
        token, expires_in = issue_jwt(user_id, config)
    except ValueError as exc:  # also AuthError for a malformed user id
        raise CliError("invalid_value", str(exc)) from None
    except OSError as exc:
        raise CliError("key_unreadable", str(exc)) from None
    if args.json:
        print_json({"token": token, "expiresIn": expires_in})
    else:
        print(token)
    return EXIT_OK


def _add_revocation_flags(parser: argparse.ArgumentParser, *, hidden: bool = False) -> None:
    """``--redis-url`` and ``--ns``; ``hidden``: accepted but ignored and not in ``--help``."""
    parser.add_argument(
        "--redis-url",
        default=_env("WSMQ_REDIS_URL"),
        help=argparse.SUPPRESS
        if hidden
        else "also publish the revocation on this Redis so every node drops the user's sockets "
        "now (env WSMQ_REDIS_URL)",
    )
    parser.add_argument(
        "--ns",
        default=_env("WSMQ_NS") or DEFAULT_NS,
        help=argparse.SUPPRESS
        if hidden
        else f"the nodes' Redis key namespace (env WSMQ_NS; default {DEFAULT_NS!r})",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``wsmq user ...`` and ``wsmq token``."""
    user = subparsers.add_parser(
        "user",
        help="manage users (add, list, disable, enable, passwd)",
        description="Manage the users of a user store (--mongo-url or --users-file), also "
        "while nodes are running.",
    )
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = user_sub.add_parser(
        "add",
        help="create a user and print its access token once",
        description="Create user NAME and print its id and access token (shown only now). "
        "Without --password a password is prompted for, or generated and printed. Creates "
        "the users file if it does not exist.",
    )
    add.add_argument("name", metavar="NAME", help="user name")
    add.add_argument("--queues", default="", help="queues it may subscribe to, comma-separated")
    add.add_argument("--publish", default="", help="queues it may send to, comma-separated")
    _add_password_flags(add)
    _finish_command(add, cmd_user_add)

    lst = user_sub.add_parser(
        "list",
        help="list users (no secrets)",
        description="List every user: id, name, disabled, queues and publish lists (never a "
        "hash or a token).",
    )
    _finish_command(lst, cmd_user_list)

    for name, func, text, description in (
        (
            "disable",
            cmd_user_disable,
            "disable a user and revoke its access token",
            "Disable user NAME: its tokens stop working. With --redis-url every node also "
            "closes its open sockets at once.",
        ),
        (
            "enable",
            cmd_user_enable,
            "re-enable a disabled user",
            "Re-enable user NAME. Disabling revoked its access token: it logs in again "
            "(POST /auth/login) for a new one.",
        ),
        (
            "passwd",
            cmd_user_passwd,
            "change a password (revokes the access token)",
            "Change the password of user NAME (prompted, given, or generated and printed); "
            "this revokes its access token. With --redis-url every node also closes its open "
            "sockets at once.",
        ),
    ):
        p = user_sub.add_parser(name, help=text, description=description)
        p.add_argument("name", metavar="NAME", help="user name (or id)")
        if name == "passwd":
            _add_password_flags(p)
        # Enabling revokes nothing; the flags stay accepted for scripts written when every
        # user action listed them.
        _add_revocation_flags(p, hidden=name == "enable")
        _finish_command(p, func)

    tok = subparsers.add_parser(
        "token",
        help="sign an x-token (JWT) for a user",
        description="Sign an x-token (JWT) for USER with the nodes' key. Given the user store "
        "(--users-file or --mongo-url, or their WSMQ_* variables), USER may be a name or an "
        "id, and an unknown or disabled user is refused; without it, USER is the id, unchecked.",
    )
    tok.add_argument("user", metavar="USER", help="the user's id (or name, with a user store)")
    tok.add_argument("--secret", default=_env("WSMQ_SECRET"), help="HMAC secret (env WSMQ_SECRET)")
    tok.add_argument(
        "--ttl",
        type=positive_int,
        default=_env("WSMQ_TOKEN_TTL") or "900",
        help="lifetime in seconds (900; env WSMQ_TOKEN_TTL)",
    )
    tok.add_argument("--algorithm", default=_env("WSMQ_ALGORITHM") or "HS256", help="JWT algorithm")
    tok.add_argument(
        "--private-key-file",
        default=_env("WSMQ_PRIVATE_KEY_FILE"),
        help="PEM private key for RS256/ES256/EdDSA",
    )
    tok.add_argument("--issuer", default=_env("WSMQ_ISSUER"), help="iss claim")
    tok.add_argument("--audience", default=_env("WSMQ_AUDIENCE"), help="aud claim")
    _finish_command(tok, cmd_token, "user store to check USER against (optional)")

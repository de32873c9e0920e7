"""The demo's users and queues: two users who may publish to each other and to ``chat``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsmq.testing.users import make_users

__all__ = [
    "CONSOLE_KEY_NAME",
    "DEMO_USERS",
    "SHARED_QUEUE",
    "DemoUser",
    "create_console_key",
    "create_demo_users",
    "create_queues",
]

#: ``(name, password)`` of the demo users. Known passwords are fine: the demo binds loopback.
DEMO_USERS: tuple[tuple[str, str], ...] = (("alice", "alice-demo"), ("bob", "bob-demo"))
#: The queue every demo user may subscribe and publish to.
SHARED_QUEUE = "chat"
#: The name of the API key the demo creates for the operator console.
CONSOLE_KEY_NAME = "console"


@dataclass(frozen=True)
class DemoUser:
    """A demo user: its own queue is its id; it may publish to the other's id and ``chat``."""

    name: str
    password: str
    id: str
    access_token: str
    queues: tuple[str, ...]
    publish: tuple[str, ...]


async def create_demo_users(
    users_file: Path, specs: Sequence[tuple[str, str]] = DEMO_USERS
) -> list[DemoUser]:
    """Write ``users_file`` with the demo users, each allowed to publish to every other's id.

    Ids are only known once the users exist, so the ``publish`` lists are filled in by
    rewriting the file before any node reads it. The store is then reopened to check the result.
    """
    from wsmq.auth import open_user_store

    created = await make_users(
        users_file,
        names=[name for name, _ in specs],
        passwords=[password for _, password in specs],
        queues=[SHARED_QUEUE],
        publish=[SHARED_QUEUE],
        hasher=None,  # the product's cost: demo users log in through the real endpoint
    )
    ids = [u.user_id for u in created]
    publish = {uid: [SHARED_QUEUE, *(o for o in ids if o != uid)] for uid in ids}
    await asyncio.to_thread(_set_publish_lists, users_file, publish)

    store = open_user_store(users_file=users_file)
    users: list[DemoUser] = []
    try:
        for made in created:
            stored = await store.get(made.user_id)
            if stored is None or set(stored.publish) != set(publish[made.user_id]):
                raise RuntimeError(f"demo users file: could not set {made.name}'s publish list")
            users.append(
                DemoUser(
                    made.name, made.password, made.user_id, made.access_token, stored.queues,
                    stored.publish,
                )
            )  # fmt: skip
    finally:
        await store.close()
    return users


def _set_publish_lists(users_file: Path, publish: dict[str, list[str]]) -> None:
    # Nodes have not started yet, so a plain atomic rewrite of the file is safe.
    data = json.loads(users_file.read_text(encoding="utf-8"))
    for doc in data["users"]:
        doc["publish"] = publish[str(doc["_id"])]
    tmp = users_file.with_name(users_file.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    os.replace(tmp, users_file)


async def create_console_key(users_file: Path) -> str:
    """Add an API key for the operator console (read, publish and admin) to ``users_file``;
    returns the key (the store keeps only its hash)."""
    from wsmq.auth import open_user_store
    from wsmq.auth.apikeys import api_key_store

    store = open_user_store(users_file=users_file)
    try:
        _, key = await api_key_store(store).add(CONSOLE_KEY_NAME, "read,publish,admin")
    finally:
        await store.close()
    return key


async def create_queues(redis_url: str, qnames: Sequence[str]) -> None:
    from wsmq.queue import QueueExists, Queues

    queues = Queues.from_url(redis_url)
    try:
        for qname in qnames:
            with contextlib.suppress(QueueExists):
                await queues.create_queue(qname)
    finally:
        await queues.close()

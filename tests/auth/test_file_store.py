"""The users file: shared by instances and processes, re-read on change, never corrupted."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from wsmq.auth import FileUserStore, UserStoreError

from .conftest import CHEAP

WRITER = """
import asyncio, sys
from wsmq.auth import FileUserStore, PasswordHasher
async def main():
    store = FileUserStore(sys.argv[1], hasher=PasswordHasher(n=16))
    for i in range(int(sys.argv[3])):
        await store.create(f"{sys.argv[2]}-{i}", "pw")
asyncio.run(main())
"""


async def test_missing_file_is_an_empty_store_created_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "users.json"
    store = FileUserStore(path, hasher=CHEAP)
    assert await store.list() == []
    await store.create("alice", "pw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    body = json.loads(path.read_text())
    assert body["version"] == 1 and body["users"][0]["userName"] == "alice"
    assert "pw" not in body["users"][0]["passwordHash"].split("$")[-1:]


async def test_other_instance_sees_changes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    node = FileUserStore(path, hasher=CHEAP)
    cli = FileUserStore(path, hasher=CHEAP)
    assert await node.get_by_name("alice") is None
    alice, _ = await cli.create("alice", "pw")
    assert (await node.get_by_name("alice")) is not None
    # Same size, same inode lottery: an access-token rotation must still be seen immediately.
    before = await node.get(alice.id)
    await cli.set_access_token(alice.id)
    after = await node.get(alice.id)
    assert before is not None and after is not None
    assert before.access_token_hash != after.access_token_hash
    await cli.set_disabled(alice.id)
    got = await node.get(alice.id)
    assert got is not None and got.disabled


async def test_get_reuses_the_user_until_the_file_changes(tmp_path: Path) -> None:
    # A handshake looks the user up: it must not rebuild a service account's 10k-queue list.
    path = tmp_path / "users.json"
    cli = FileUserStore(path, hasher=CHEAP)
    bot, _ = await cli.create("bot", "pw", queues=[f"q{i}" for i in range(10_000)])
    node = FileUserStore(path, hasher=CHEAP)
    first = await node.get(bot.id)
    assert first is not None and len(first.queues) == 10_000
    assert await node.get(bot.id) is first
    assert await node.get("nobody") is None
    await cli.set_disabled(bot.id)  # another instance writes: the next lookup sees it
    changed = await node.get(bot.id)
    assert changed is not None and changed is not first and changed.disabled
    assert changed.queues is first.queues  # equal queue lists are still one tuple


async def test_other_process_write_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    node = FileUserStore(path, hasher=CHEAP)
    assert await node.list() == []
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path), "p", "2")
    async with asyncio.timeout(30):
        assert await proc.wait() == 0
    assert [u.user_name for u in await node.list()] == ["p-0", "p-1"]


async def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path), f"w{i}", "8")
        for i in range(3)
    ]
    # Meanwhile two in-process instances write too.
    local = [FileUserStore(path, hasher=CHEAP) for _ in range(2)]
    async with asyncio.timeout(60):
        await asyncio.gather(
            *(s.create(f"local{i}-{j}", "pw") for i, s in enumerate(local) for j in range(5))
        )
        assert [await p.wait() for p in procs] == [0, 0, 0]
    names = {u.user_name for u in await FileUserStore(path).list()}
    assert len(names) == 3 * 8 + 2 * 5
    json.loads(path.read_text())  # valid JSON
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".users.json.")]  # no temp files


async def test_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = FileUserStore(path, hasher=CHEAP)
    alice, _ = await store.create("alice", "pw")
    path.write_text("{not json")
    # A running node keeps its last good copy instead of locking everybody out...
    assert (await store.get(alice.id)) is not None
    # ...a new one refuses to start, with a clear error...
    with pytest.raises(UserStoreError, match="not valid JSON"):
        FileUserStore(path)
    # ...and writes refuse rather than overwrite the file.
    with pytest.raises(UserStoreError):
        await store.create("bob", "pw")
    assert path.read_text() == "{not json"


@pytest.mark.parametrize("body", ['{"users": {}}', '{"users": [{"userName": "x"}]}', "[]"])
def test_wrong_shape_is_refused(tmp_path: Path, body: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(body)
    with pytest.raises(UserStoreError):
        FileUserStore(path)

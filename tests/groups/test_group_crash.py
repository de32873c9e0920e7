"""A copier SIGKILLed mid-batch: after another copier redoes the batch, every member holds every
group message exactly once (on one server and on a cluster with members on three masters)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from wsmq.engine.group_copier import GroupCopier
from wsmq.queue import Queues

from .conftest import names_on_every_master

ROOT = Path(__file__).resolve().parents[2]
VT = 1  # the killed copier's batch comes back after this long


async def run_killed_copier(url: str, kill_after: int, batch_size: int) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.groups.copier_proc", url, str(kill_after),
        str(batch_size), str(VT),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out
    return out.decode().splitlines()


async def all_ids(queues: Queues, qname: str) -> list[str]:
    return [str(m) for m in await queues.redis.zrange(queues.keys.messages(qname), 0, -1)]


# 5 messages, batches of 2, 3 members: copies 1-3 are batch 1, 4-6 batch 2, 7-9 batch 3.
@pytest.mark.parametrize(
    "kill_after",
    [
        1,  # batch 1: one member has its copies, two have none
        3,  # batch 1: every member has its copies, the group's messages are not deleted
        5,  # batch 1 done and deleted; batch 2 half copied
    ],
)
async def test_a_copier_killed_mid_batch_loses_no_copy_and_stores_none_twice(
    url: str, queues: Queues, kill_after: int
) -> None:
    members = names_on_every_master()
    for m in members:
        await queues.create_queue(m)
    await queues.groups.add("news", *members)
    ids = await queues.send_messages("news", [f"msg {i}" for i in range(5)])

    copied = await run_killed_copier(url, kill_after, batch_size=2)
    assert len(copied) == kill_after and all(line.endswith("new new") for line in copied)
    # The crash left work half done: some member lacks a message the group still holds.
    left = await all_ids(queues, "news")
    assert left
    counts = [len(await all_ids(queues, m)) for m in members]
    assert counts != [5, 5, 5]
    # Subscribers of the members consume and ack what was copied before the crash, so a redo
    # cannot rely on finding those copies: the copy markers must stop it.
    acked: dict[str, list[str]] = {}
    for m in members:
        got = await queues.receive_messages(m, 10)
        acked[m] = [g.id for g in got]
        assert await queues.delete_messages(m, acked[m]) == len(got)

    # Another copier redoes the batch once its vt is over (the killed one released nothing).
    copier = GroupCopier(queues, batch_size=2, vt=VT)
    async with asyncio.timeout(15):
        while await all_ids(queues, "news"):
            await copier.run_once()
            await asyncio.sleep(0.05)  # polling Redis state (the batch is hidden for VT)
    assert copier.copies == 15 - sum(counts)
    for m in members:
        stored = await all_ids(queues, m)
        assert not set(stored) & set(acked[m]), m
        assert sorted(stored + acked[m]) == sorted(ids), m  # every message, exactly once
        assert (await queues.get_queue_attributes(m)).totalsent == 5


async def test_a_stalled_copier_abandons_its_batch_and_the_redo_copies_once(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    members = names_on_every_master(2)
    for m in members:
        await queues.create_queue(m)
    await queues.groups.add("news", *members)
    ids = await queues.send_messages("news", ["a", "b"])

    async def stall(group: str, member: str, statuses: list[str]) -> None:
        await asyncio.sleep(1.0)  # the stall under test: past 80 % of the 1 s vt

    slow = GroupCopier(queues, vt=1, member_concurrency=1, on_member_copied=stall)
    await slow.run_once()
    assert "copying a batch took longer than 1s; released for a redo" in caplog.text
    assert sorted([len(await all_ids(queues, m)) for m in members]) == [0, 2]
    # Released at once (not after the vt): visible again for the next copier.
    assert (await queues.get_queue_attributes("news")).hiddenmsgs == 0
    assert await GroupCopier(queues).run_once() == 2
    for m in members:
        assert sorted(await all_ids(queues, m)) == sorted(ids)

"""The background copier: woken by realtime notifications, and by its fallback poll."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from wsmq.engine.group_copier import GroupCopier
from wsmq.queue import Queues
from wsmq.realtime.listener import RealtimeListener

from .conftest import names_on_every_master


async def wait_for(cond: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll Redis state until ``cond`` holds (fails after ``timeout``)."""
    async with asyncio.timeout(timeout):
        while not await cond():
            await asyncio.sleep(0.02)


async def test_a_notification_wakes_the_copier(url: str, queues: Queues) -> None:
    members = names_on_every_master()
    for m in members:
        await queues.create_queue(m)
    await queues.groups.add("news", *members)
    # A fallback poll far beyond the test's timeout: only the notification can wake it.
    async with (
        GroupCopier.from_url(url, poll_interval=600) as copier,
        RealtimeListener(url, layout=queues.layout) as member_channel,
    ):
        assert await member_channel.subscribe(members[0])
        await wait_for(lambda: _true("news" in copier.groups))
        msg_id = await queues.send_message("news", "hello")  # publishes on the group's channel

        async def copied() -> bool:
            counts = await queues.visible_counts(members)
            return all(counts[m] == 1 for m in members)

        await wait_for(copied)
        # The copy is announced on the member's channel, so its subscribers wake at once too.
        async with asyncio.timeout(5):
            assert await anext(aiter(member_channel)) == members[0]
    for m in members:
        got = await queues.receive_message(m)
        assert got is not None and (got.id, got.message) == (msg_id, "hello")
    assert (await queues.get_queue_attributes("news")).msgs == 0


async def test_the_poll_finds_new_groups_and_silent_publishers(url: str, queues: Queues) -> None:
    await queues.create_queue("inbox")
    async with GroupCopier.from_url(url, poll_interval=0.2) as copier:
        await queues.groups.add("late", "inbox")
        await wait_for(lambda: _true("late" in copier.groups))
        async with Queues.from_url(url, realtime=False) as silent:  # publishes no notification
            await silent.send_message("late", "no notification")
        await wait_for(lambda: _visible(queues, "inbox", 1))
        await queues.groups.delete("late")
        await wait_for(lambda: _true("late" not in copier.groups))


async def _true(value: bool) -> bool:
    return value


async def _visible(queues: Queues, qname: str, count: int) -> bool:
    return (await queues.visible_counts([qname]))[qname] == count


async def test_a_broken_group_does_not_stop_the_others(
    url: str, queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    for q in ("inbox", "other"):
        await queues.create_queue(q)
    await queues.groups.add("good", "inbox")
    await queues.groups.add("broken", "other")
    await queues.send_message("broken", "x")
    # Another program overwrote the group's messages key, and put junk into the registry.
    await queues.redis.delete(queues.keys.messages("broken"))
    await queues.redis.set(queues.keys.messages("broken"), "not a sorted set")
    await queues.redis.sadd(queues.keys.groups(), "bad name")
    async with GroupCopier.from_url(url, poll_interval=0.1) as copier:
        await wait_for(lambda: _true("good" in copier.groups))
        await queues.send_message("good", "still copied")
        await wait_for(lambda: _visible(queues, "inbox", 1))
        await wait_for(lambda: _true("group broken: copying failed" in caplog.text))
        polls = copier.polls  # a few more polls fail on it again: still one line
        await wait_for(lambda: _true(copier.polls >= polls + 3))
        await queues.send_message("good", "and again")
        await wait_for(lambda: _visible(queues, "inbox", 2))
    assert caplog.text.count("group broken: copying failed") == 1

"""Groups in the queue layer: membership, the copy step, and a copier draining groups once.

On one server and on a real 3-master cluster with the members on three different masters.
"""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from wsmq.engine.group_copier import GroupCopier
from wsmq.queue import InvalidFormat, InvalidValue, NotAGroup, QueueNotFound, Queues
from wsmq.queue.groups import COPY_MARKER_GRACE
from wsmq.queue.slots import slot

from .conftest import names_on_every_master


async def member_ids(queues: Queues, qname: str) -> list[str]:
    """Every message id in ``qname`` (visible or not), duplicates kept."""
    return [str(m) for m in await queues.redis.zrange(queues.keys.messages(qname), 0, -1)]


async def test_group_add_creates_the_group_and_lists_it(queues: Queues) -> None:
    for q in ("a", "b", "c"):
        await queues.create_queue(q)
    assert await queues.groups.add("news", "a", "b") == 2
    assert await queues.groups.add("news", "b", "c", "c") == 1  # b already, c once
    assert await queues.groups.members("news") == ["a", "b", "c"]
    assert await queues.groups.names() == ["news"]
    assert "news" in await queues.list_queues()  # a group is a queue (RSMQ publishers send to it)
    assert await queues.groups.is_group("news") and not await queues.groups.is_group("a")
    attrs = await queues.get_queue_attributes("news")
    assert (attrs.vt, attrs.delay, attrs.maxsize) == (30, 0, 65536)
    assert await queues.groups.add("empty") == 0  # a group with no member yet
    assert await queues.groups.names() == ["empty", "news"]
    assert await queues.groups.members("empty") == []


async def test_group_errors_are_typed_and_name_the_queue(queues: Queues) -> None:
    await queues.create_queue("plain")
    with pytest.raises(QueueNotFound, match="'ghost'"):
        await queues.groups.add("g", "plain", "ghost")
    assert await queues.groups.names() == []  # nothing created by a refused call
    await queues.groups.add("g", "plain")
    with pytest.raises(InvalidValue, match="cannot be a member of a group"):
        await queues.groups.add("g2", "g")
    with pytest.raises(InvalidValue, match="member of itself"):
        await queues.groups.add("g", "g")
    with pytest.raises(NotAGroup, match="'plain'"):
        await queues.groups.add("plain")
    with pytest.raises(NotAGroup):
        await queues.groups.members("plain")
    with pytest.raises(NotAGroup):
        await queues.groups.remove("plain", "g")
    with pytest.raises(QueueNotFound):
        await queues.groups.members("nope")
    with pytest.raises(InvalidFormat):
        await queues.groups.add("bad name", "plain")
    with pytest.raises(InvalidFormat):
        await queues.groups.add("g", "QUEUES")


async def test_remove_delete_and_deleting_a_member(queues: Queues) -> None:
    for q in ("a", "b", "c"):
        await queues.create_queue(q)
    await queues.groups.add("g", "a", "b", "c")
    assert await queues.groups.remove("g", "a", "zzz") == 1
    assert await queues.groups.members("g") == ["b", "c"]
    await queues.delete_queue("b")  # a deleted queue leaves every group
    assert await queues.groups.members("g") == ["c"]
    await queues.send_message("g", "never copied")
    await queues.groups.delete("g")
    assert await queues.groups.names() == []
    assert "g" not in await queues.list_queues()
    assert not await queues.redis.exists(queues.keys.members("g"))
    with pytest.raises(QueueNotFound):
        await queues.groups.delete("g")
    with pytest.raises(NotAGroup):
        await queues.groups.delete("c")
    assert await queues.queue_exists("c")  # members stay


async def test_send_to_a_group_reaches_every_member_exactly_once(queues: Queues) -> None:
    members = names_on_every_master()
    if queues.keys.cluster:
        assert len({slot(queues.keys.messages(m)) * 3 // 16384 for m in members}) == 3
    for m in members:
        await queues.create_queue(m)
    await queues.groups.add("news", *members)
    ids = [await queues.send_message("news", f"m{i}") for i in range(5)]
    ids += await queues.send_messages("news", [f"b{i}" for i in range(7)])
    copier = GroupCopier(queues, batch_size=5)  # several batches
    assert await copier.run_once() == 12 * 3
    for m in members:
        assert sorted(await member_ids(queues, m)) == sorted(ids)
        got = await queues.receive_messages(m, 100)
        # A copy keeps the group message's id (same id in every member) and body.
        bodies = [f"m{i}" for i in range(5)] + [f"b{i}" for i in range(7)]
        assert {g.id: g.message for g in got} == dict(zip(ids, bodies, strict=True))
        # The copy markers only outlive the group message by the grace period.
        ttl = await queues.redis.ttl(queues.keys.copy_marker(m, ids[0]))
        assert 0 < ttl <= COPY_MARKER_GRACE
    attrs = await queues.get_queue_attributes("news")
    assert attrs.msgs == 0 and attrs.totalsent == 12
    assert await copier.run_once() == 0


async def test_a_redone_copy_is_not_stored_twice_even_after_the_member_acked(
    queues: Queues,
) -> None:
    await queues.create_queue("a")
    await queues.groups.add("g", "a")
    await queues.send_messages("g", ["x", "y"])
    msgs = await queues.receive_messages("g", 10)
    assert await queues.groups.copy_messages("a", msgs) == ["new", "new"]
    # The copier "died" here: the group still holds both; a redo must not store them again,
    assert await queues.groups.copy_messages("a", msgs) == ["dup", "dup"]
    # not even once the member's consumer has received and deleted (acked) the copies.
    got = await queues.receive_messages("a", 10)
    assert await queues.delete_messages("a", [m.id for m in got]) == 2
    assert await queues.groups.copy_messages("a", msgs) == ["dup", "dup"]
    assert await member_ids(queues, "a") == []
    assert (await queues.get_queue_attributes("a")).totalsent == 2


async def test_group_without_members_keeps_its_messages(queues: Queues) -> None:
    await queues.groups.add("g")
    msg_id = await queues.send_message("g", "wait for me")
    copier = GroupCopier(queues)
    assert await copier.run_once() == 0
    attrs = await queues.get_queue_attributes("g")
    assert (attrs.msgs, attrs.hiddenmsgs) == (1, 0)  # kept, and not even hidden
    await queues.create_queue("late")
    await queues.groups.add("g", "late")
    assert await copier.run_once() == 1
    assert await member_ids(queues, "late") == [msg_id]


async def test_too_long_or_missing_members_do_not_block_the_others(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    await queues.create_queue("big")
    await queues.create_queue("small", maxsize=1024)
    await queues.groups.add("g", "big", "small")
    # A member that vanished without leaving the group (another program deleted its keys).
    await queues.redis.sadd(queues.keys.members("g"), "gone")
    short, long = (
        await queues.send_message("g", "short"),
        await queues.send_message("g", "x" * 2000),
    )
    assert await GroupCopier(queues).run_once() == 3
    assert sorted(await member_ids(queues, "big")) == sorted([short, long])
    assert await member_ids(queues, "small") == [short]
    assert (await queues.get_queue_attributes("g")).msgs == 0
    assert "member queue gone does not exist" in caplog.text
    assert "longer than member small's maxsize" in caplog.text


async def test_rsmq_layout_keys_are_outside_every_queue(redis_url: str) -> None:
    """The group keys never collide with a queue's keys in RSMQ's layout."""
    async with Queues.from_url(redis_url) as q:
        await q.create_queue("wsmq")  # the name the registry key borrows
        await q.create_queue("G")
        await q.groups.add("grp", "wsmq", "G")
        raw = Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await raw.type("rsmq:wsmq:groups") == "set"
            assert await raw.type("rsmq:grp:G") == "set"
            assert await raw.type("rsmq:wsmq:Q") == "hash" and await raw.type("rsmq:G:Q") == "hash"
        finally:
            await raw.aclose()
        assert await q.groups.members("grp") == ["G", "wsmq"]


async def test_member_delay_applies_to_its_copies(queues: Queues) -> None:
    await queues.create_queue("now")
    await queues.create_queue("later", delay=60)
    await queues.groups.add("g", "now", "later")
    await queues.send_message("g", "hi")
    assert await GroupCopier(queues).run_once() == 2
    assert (await queues.get_queue_attributes("now")).hiddenmsgs == 0
    assert (await queues.get_queue_attributes("later")).hiddenmsgs == 1

"""Device inboxes at the queue layer: the fan-out, registry, lease and retention scripts on a
real Redis (docs/delivery.md, Devices)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis

from wsmq.protocol.names import GROUP, inbox_name, is_valid_device
from wsmq.queue import InvalidFormat, Queues
from wsmq.queue import devices as devices_module
from wsmq.queue.devices import FAN_OUT_ATTEMPTS, DeviceInUse, DevicesChanging, QueueFansOut
from wsmq.queue.scripts import run_script

LEASE = 60_000
DAY = 86_400_000


async def test_fan_out_copies_every_visible_message_to_every_device(queues: Queues) -> None:
    await queues.create_queue("fq", vt=30, max_receive_count=2)
    assert await queues.register_device("fq", "laptop", "n1", LEASE)
    assert await queues.register_device("fq", "phone", "n1", LEASE)
    assert not await queues.register_device("fq", "phone", "n2", LEASE)  # already registered
    ids = [await queues.send_message("fq", f"m{i}") for i in range(3)]
    delayed = await queues.send_message("fq", "later", delay=100)
    result = await queues.fan_out("fq", DAY)
    assert (result.moved, result.removed, result.live) == (3, (), 2)
    assert result.next_visible is not None  # the delayed one stays in the queue
    assert (await queues.get_queue_attributes("fq")).msgs == 1
    for device in ("laptop", "phone"):
        got = await queues.receive_messages(inbox_name("fq", device), 10)
        assert [m.id for m in got] == ids
        assert [m.message for m in got] == ["m0", "m1", "m2"]
        assert all(m.rc == 1 for m in got)
    # Each inbox is acked independently.
    assert await queues.delete_messages(inbox_name("fq", "laptop"), ids) == 3
    assert await queues.change_messages_visibility(inbox_name("fq", "phone"), ids, 0) == 3
    again = await queues.receive_messages(inbox_name("fq", "phone"), 10)
    assert [m.rc for m in again] == [2, 2, 2]
    assert delayed not in ids


async def test_inbox_follows_the_queue_max_receive_count_and_dead_letter(queues: Queues) -> None:
    await queues.create_queue("dl")
    await queues.create_queue("fdl", max_receive_count=1, dead_letter_queue="dl")
    await queues.register_device("fdl", "d1", "n1", LEASE)
    msg_id = await queues.send_message("fdl", "x")
    await queues.fan_out("fdl", DAY)
    inbox = inbox_name("fdl", "d1")
    assert (await queues.receive_messages(inbox, 1))[0].id == msg_id
    await queues.change_messages_visibility(inbox, [msg_id], 0)
    assert await queues.receive_messages(inbox, 1) == []  # over the max: dead-lettered
    assert (await queues.receive_message("dl")) is not None


async def test_plain_consumer_receive_reports_a_fan_out_queue(queues: Queues) -> None:
    await queues.create_queue("pq")
    await queues.send_message("pq", "a")
    got, _ = await queues.receive_with_next("pq", 1, 0, fan_out_check=True)
    assert len(got) == 1  # no devices: a plain queue
    await queues.register_device("pq", "d1", "n1", LEASE)
    with pytest.raises(QueueFansOut):
        await queues.receive_with_next("pq", 1, fan_out_check=True)
    # The RSMQ API itself is unchanged.
    assert await queues.receive_message("pq", vt=0) is not None


async def test_retention_removes_idle_devices_but_never_one_in_use(
    queues: Queues, raw: Redis
) -> None:
    await queues.create_queue("rq")
    await queues.register_device("rq", "idle", "n1", LEASE)
    await queues.register_device("rq", "busy", "n2", LEASE)
    await queues.release_device("rq", "idle", "n1")
    await queues.send_message("rq", "m")
    assert (await queues.fan_out("rq", DAY)).moved == 1
    assert await raw.exists(queues.keys.messages(inbox_name("rq", "idle"))) == 1
    # Retention 1 ms: "idle" was last seen longer ago than that; "busy" holds a lease.
    await raw.zadd(queues.keys.devices("rq"), {"idle": 1, "busy": 1})
    result = await queues.fan_out("rq", 1, budget=0)
    assert result.removed == ("idle",)
    assert result.live == 1
    assert await raw.exists(queues.keys.messages(inbox_name("rq", "idle"))) == 0
    assert await raw.exists(queues.keys.attributes(inbox_name("rq", "idle"))) == 0
    assert await raw.zrange(queues.keys.devices("rq"), 0, -1) == ["busy"]
    # A lease that expired (its node died) counts as last seen at its expiry.
    await raw.zadd(queues.keys.device_leases("rq"), {"busy/n2": 5})
    assert (await queues.fan_out("rq", 1, budget=0)).removed == ("busy",)
    assert await queues.device_queue_names() == ["rq"]


async def test_leave_refuses_a_device_in_use(queues: Queues, raw: Redis) -> None:
    await queues.create_queue("lq")
    await queues.register_device("lq", "d1", "n1", LEASE)
    with pytest.raises(DeviceInUse):
        await queues.leave_device("lq", "d1", "other")
    with pytest.raises(DeviceInUse):
        await queues.leave_device("lq", "d1", "n1", holding=True)
    assert await queues.leave_device("lq", "d1", "n1")  # its own lease, no longer held
    # Left: the plain subscribers' shared inbox, which the next fan-out removes (it is empty).
    assert await raw.zcard(queues.keys.devices("lq")) == 1
    assert await raw.zscore(queues.keys.devices("lq"), GROUP) is not None
    result = await queues.fan_out("lq", DAY)
    assert (result.live, result.group) == (0, False)
    assert await raw.zcard(queues.keys.devices("lq")) == 0
    assert not await queues.leave_device("lq", "d1")


async def test_stale_device_list_is_retried(queues: Queues) -> None:
    await queues.create_queue("sq")
    other = Queues(queues.redis)  # another node: its own hint
    await queues.register_device("sq", "a", "n1", LEASE)
    await other.fan_out("sq", DAY)
    await queues.register_device("sq", "b", "n1", LEASE)
    await queues.send_message("sq", "m")
    assert (await other.fan_out("sq", DAY)).live == 2
    assert other.device_hint["sq"] == ["a", "b", GROUP]


async def test_fan_out_with_nothing_visible_returns_before_the_registry(queues: Queues) -> None:
    await queues.create_queue("eq")
    assert (await queues.fan_out("eq", DAY)).live == 0  # no devices: a plain queue
    other = Queues(queues.redis)
    await queues.register_device("eq", "a", "n1", LEASE)
    await queues.send_message("eq", "now")
    assert (await other.fan_out("eq", DAY)).moved == 1
    await queues.register_device("eq", "b", "n1", LEASE)
    await queues.send_message("eq", "later", delay=60)
    result = await other.fan_out("eq", DAY)  # a stale list, but nothing to copy: no retry
    assert (result.moved, result.live) == (0, 2)
    assert result.next_visible is not None and result.next_visible > await queues.now_ms()
    assert other.device_hint["eq"] == ["a", GROUP]
    await queues.delete_queue("eq")
    assert (await other.fan_out("eq", DAY)).live == -1  # devices left, queue gone


async def test_a_registry_changing_on_every_attempt_raises_devices_changing(
    queues: Queues, monkeypatch: pytest.MonkeyPatch
) -> None:
    await queues.create_queue("cq")
    await queues.register_device("cq", "d0", "n1", LEASE)
    await queues.send_message("cq", "m")
    joined = 0

    async def racing(redis: Redis, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        nonlocal joined
        if name == "fanout":  # another device registers just before every attempt
            joined += 1
            await devices_module.register_device(queues, "cq", f"new{joined}", "n2", LEASE)
        return await run_script(redis, name, keys, args)

    monkeypatch.setattr(devices_module, "run_script", racing)
    with pytest.raises(DevicesChanging) as err:
        await queues.fan_out("cq", DAY)
    assert err.value.code == "devices_changing"
    assert joined == FAN_OUT_ATTEMPTS
    assert (await queues.get_queue_attributes("cq")).msgs == 1  # nothing copied, nothing lost


async def test_inbox_names_are_validated(queues: Queues) -> None:
    with pytest.raises(InvalidFormat):
        await queues.receive_messages("q@bad:device", 1)
    with pytest.raises(InvalidFormat):
        await queues.register_device("q", "x" * 65, "n1", LEASE)


def test_cluster_layout_keeps_inboxes_in_the_queue_slot() -> None:
    from wsmq.queue.keys import KeyLayout
    from wsmq.queue.slots import slot

    keys = KeyLayout("rsmq", cluster=True)
    inbox = inbox_name("orders", "phone")
    assert keys.messages(inbox) == "rsmq:{orders}:dev:phone"
    assert keys.attributes(inbox) == "rsmq:{orders}:dev:phone:Q"
    assert {
        slot(k)
        for k in (keys.messages(inbox), keys.devices("orders"), keys.device_leases("orders"))
    } == {slot(keys.messages("orders"))}
    assert KeyLayout().messages(inbox) == "rsmq:orders:dev:phone"


async def test_a_new_device_beyond_the_cap_is_refused(queues: Queues) -> None:
    await queues.create_queue("cq")
    assert await queues.register_device("cq", "d1", "n1", LEASE, max_devices=2)
    assert await queues.register_device("cq", "d2", "n1", LEASE, max_devices=2)
    with pytest.raises(devices_module.TooManyDevices) as info:
        await queues.register_device("cq", "d3", "n1", LEASE, max_devices=2)
    assert info.value.code == "too_many_devices"
    # Nothing of the refused device was written: no registry entry, lease or inbox.
    # ("~", the plain subscribers' shared inbox, is registered with the first device and does
    # not count toward the cap.)
    assert sorted(await queues.redis.zrange(queues.keys.devices("cq"), 0, -1)) == ["d1", "d2", "~"]
    assert await queues.redis.zcard(queues.keys.device_leases("cq")) == 2
    assert not await queues.redis.exists(queues.keys.attributes(inbox_name("cq", "d3")))
    # A registered device comes back at the cap; a place freed by a leave is taken again.
    assert not await queues.register_device("cq", "d2", "n2", LEASE, max_devices=2)
    await queues.release_device("cq", "d1", "n1")
    assert await queues.leave_device("cq", "d1")
    assert await queues.register_device("cq", "d3", "n1", LEASE, max_devices=2)
    # 0: no limit.
    assert await queues.register_device("cq", "d4", "n1", LEASE, max_devices=0)


async def test_delete_queue_drops_its_idle_devices_so_a_new_queue_starts_plain(
    queues: Queues,
) -> None:
    await queues.create_queue("dq")
    await queues.register_device("dq", "gone", "n1", LEASE)
    await queues.release_device("dq", "gone", "n1")
    await queues.register_device("dq", "busy", "n2", LEASE)
    await queues.send_message("dq", "old")
    assert (await queues.fan_out("dq", DAY)).moved == 1
    await queues.delete_queue("dq")
    # The idle device went with the queue, inbox and old message too; the one in use stays.
    assert await queues.redis.zrange(queues.keys.devices("dq"), 0, -1) == ["busy"]
    assert not await queues.redis.exists(
        queues.keys.messages(inbox_name("dq", "gone")),
        queues.keys.attributes(inbox_name("dq", "gone")),
    )
    # Released, it goes with the next deletion of the name.
    await queues.release_device("dq", "busy", "n2")
    await queues.create_queue("dq")
    await queues.delete_queue("dq")
    assert not await queues.redis.exists(queues.keys.devices("dq"))
    # Created again: a plain queue, no device of the old one.
    await queues.create_queue("dq")
    await queues.send_message("dq", "new")
    got, _ = await queues.receive_with_next("dq", 1, 0, fan_out_check=True)
    assert [m.message for m in got] == ["new"]


async def test_a_device_registering_during_a_sweep_stays_in_the_sweep_set(queues: Queues) -> None:
    await queues.create_queue("sq")
    # The sweep's prune finds no device left...
    assert (await queues.fan_out("sq", DAY, budget=0)).live == 0
    # ...a device registers (and adds the queue to the set) before the sweep forgets it...
    await queues.register_device("sq", "late", "n1", LEASE)
    await queues.forget_device_queue("sq")
    # ...the queue is still swept: its device's inbox will not outlive the retention.
    assert "sq" in await queues.device_queue_names()
    await queues.leave_device("sq", "late", "n1")
    await queues.fan_out("sq", DAY)  # no device left: the shared inbox "~" goes too
    await queues.forget_device_queue("sq")
    assert "sq" not in await queues.device_queue_names()


async def test_the_shared_inbox_of_plain_subscribers_is_one_more_recipient(
    queues: Queues, raw: Redis
) -> None:
    await queues.create_queue("gq", vt=30)
    group = inbox_name("gq", GROUP)
    await queues.send_message("gq", "waiting")  # before the first device: copied to both
    assert await queues.register_device("gq", "d1", "n1", LEASE)
    assert await raw.zscore(queues.keys.devices("gq"), GROUP) is not None  # in the same step
    await queues.send_message("gq", "after")
    result = await queues.fan_out("gq", DAY)
    assert (result.moved, result.live, result.group) == (2, 1, True)
    held: list[str] = []
    for name in (inbox_name("gq", "d1"), group):
        got = await queues.receive_messages(name, 10)
        assert [m.message for m in got] == ["waiting", "after"]
        held = [m.id for m in got]  # (the group's, at the end)
    # Plain consumers: with only real devices counted, the queue still fans out.
    with pytest.raises(QueueFansOut):
        await queues.receive_with_next("gq", 1, fan_out_check=True, devices_only=True)
    # The last device leaves: the shared inbox gets nothing more, its consumers also receive
    # from the queue (only real devices count)...
    assert await queues.leave_device("gq", "d1", "n1")
    await queues.send_message("gq", "plain")
    result = await queues.fan_out("gq", DAY)
    assert (result.moved, result.live, result.group) == (0, 0, True)  # 2 in flight there
    with pytest.raises(QueueFansOut):  # a consumer that did not join learns to drain it
        await queues.receive_with_next("gq", 1, fan_out_check=True)
    msgs, _ = await queues.receive_with_next("gq", 5, fan_out_check=True, devices_only=True)
    assert [m.message for m in msgs] == ["plain"]
    # ...and once it is drained (nothing left, not even in flight) it is removed.
    assert await queues.delete_messages(group, held) == 2
    result = await queues.fan_out("gq", DAY)
    assert (result.live, result.group) == (0, False)
    assert not await raw.exists(queues.keys.devices("gq"), queues.keys.attributes(group))
    msgs, _ = await queues.receive_with_next("gq", 1, fan_out_check=True)  # a plain queue
    assert msgs == []


async def test_the_shared_inbox_is_leased_and_retained_like_a_device(
    queues: Queues, raw: Redis
) -> None:
    await queues.create_queue("hq")
    await queues.register_device("hq", "d1", "n1", LEASE)
    assert not await queues.register_device("hq", GROUP, "n2", LEASE)  # a plain consumer joins
    await raw.zadd(queues.keys.devices("hq"), {GROUP: 1})  # seen long ago, but leased by n2
    assert (await queues.fan_out("hq", 1, budget=0)).group
    await queues.release_device("hq", GROUP, "n2")
    await queues.touch_devices("hq", ["d1"], "n1", LEASE)
    await raw.zadd(queues.keys.devices("hq"), {GROUP: 1})
    result = await queues.fan_out("hq", 1, budget=0)  # not in use: removed by the retention
    assert (result.removed, result.live, result.group) == ((), 1, False)
    # A late renewal does not bring it back (a device's would: it is in use).
    await queues.touch_devices("hq", [GROUP], "n2", LEASE)
    assert await raw.zscore(queues.keys.devices("hq"), GROUP) is None
    # A plain consumer that joins again registers it (a device registered already: no copy of
    # what was sent meanwhile, those went to the devices only).
    await queues.send_message("hq", "devices only")
    await queues.fan_out("hq", DAY)
    assert await queues.register_device("hq", GROUP, "n2", LEASE)
    await queues.send_message("hq", "both")
    assert (await queues.fan_out("hq", DAY)).group
    got = await queues.receive_messages(inbox_name("hq", GROUP), 10)
    assert [m.message for m in got] == ["both"]


async def test_a_client_cannot_name_the_shared_inbox(queues: Queues) -> None:
    with pytest.raises(InvalidFormat):
        await queues.leave_device("gq", GROUP)
    assert not is_valid_device(GROUP)


async def test_a_sweep_drops_inbox_copies_past_the_message_ttl(queues: Queues) -> None:
    await queues.create_queue("tq", message_ttl=1)
    await queues.register_device("tq", "away", "n1", LEASE)
    await queues.release_device("tq", "away", "n1")
    old = await queues.send_message("tq", "old")
    assert (await queues.fan_out("tq", DAY)).moved == 1
    assert (await queues.fan_out("tq", DAY, budget=0)).expired == 0  # not yet expired
    await asyncio.sleep(1.2)  # the TTL (1 s) passing is the behaviour under test
    new = await queues.send_message("tq", "new")
    assert (await queues.fan_out("tq", DAY)).moved == 1  # a fan-out drops nothing
    inbox = inbox_name("tq", "away")
    assert (await queues.get_queue_attributes(inbox)).msgs == 2
    result = await queues.fan_out("tq", DAY, budget=0)
    # The old copy expired in the device's inbox and in the plain subscribers' shared one.
    assert (result.expired, result.removed, result.live, result.group) == (2, (), 1, True)
    group = await queues.get_queue_attributes(inbox_name("tq", GROUP))
    assert (group.msgs, group.totalexpired) == (1, 1)
    attrs = await queues.get_queue_attributes(inbox)
    assert (attrs.msgs, attrs.totalexpired) == (1, 1)
    assert [m.id for m in await queues.receive_messages(inbox, 10)] == [new]
    assert old != new

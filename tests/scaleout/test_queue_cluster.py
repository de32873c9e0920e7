"""The queue layer's cluster key layout, on a real 3-master Redis Cluster (and on one server)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from wsmq.connections import redis_from_url
from wsmq.queue import InvalidValue, KeyLayout, QueueNotFound, Queues, RealtimeListener
from wsmq.queue.publisher import send_message
from wsmq.realtime.sharded import ShardedTransport
from wsmq.testing.redisproc_cluster import RedisCluster3


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def same_slot_name(qname: str, prefix: str = "dead") -> str:
    """A queue name whose cluster-layout keys share ``qname``'s slot."""
    target = slot(f"rsmq:{{{qname}}}")
    for i in itertools.count():
        candidate = f"{prefix}{i}"
        if slot(f"rsmq:{{{candidate}}}") == target:
            return candidate
    raise AssertionError("unreachable")


@pytest.fixture
async def cq(cluster_url: str) -> AsyncIterator[Queues]:
    queues = Queues.from_url(cluster_url, realtime=True)
    try:
        yield queues
    finally:
        await queues.close()


async def next_queue(listener: RealtimeListener, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        return await anext(listener)


# --- layout ----------------------------------------------------------------------------------


def test_layouts_are_rsmq_by_default_and_hash_tagged_for_cluster() -> None:
    rsmq, cluster = KeyLayout("rsmq"), KeyLayout("rsmq", cluster=True)
    assert (rsmq.messages("q"), rsmq.attributes("q"), rsmq.realtime("q")) == (
        "rsmq:q",
        "rsmq:q:Q",
        "rsmq:rt:q",
    )
    assert (cluster.messages("q"), cluster.attributes("q"), cluster.realtime("q")) == (
        "rsmq:{q}",
        "rsmq:{q}:Q",
        "rsmq:rt:{q}",
    )
    assert rsmq.queues() == cluster.queues() == "rsmq:QUEUES"
    assert len({slot(cluster.messages("q")), slot(cluster.attributes("q"))}) == 1
    assert slot(cluster.realtime("q")) == slot(cluster.messages("q"))
    assert cluster.qname_of_channel("rsmq:rt:{q}") == "q"
    assert cluster.qname_of_channel("rsmq:rt:q") is None
    assert rsmq.qname_of_channel("rsmq:rt:q") == "q"
    assert rsmq.qname_of_channel("other:rt:q") is None
    with pytest.raises(ValueError, match="namespace"):
        KeyLayout("a{b}", cluster=True)


async def test_layout_choice(redis_url: str, cluster_url: str) -> None:
    plain = Queues.from_url(redis_url)
    tagged = Queues.from_url(redis_url, layout="cluster")
    on_cluster = Queues.from_url(cluster_url)
    try:
        assert (plain.layout, tagged.layout, on_cluster.layout) == ("rsmq", "cluster", "cluster")
        assert isinstance(on_cluster.redis, RedisCluster)
        with pytest.raises(ValueError, match="cannot run on a Redis Cluster"):
            Queues(on_cluster.redis, layout="rsmq")
        with pytest.raises(ValueError, match="layout"):
            Queues(plain.redis, layout="bogus")  # type: ignore[arg-type]
        # The cluster layout also works on one server (e.g. before moving to a cluster).
        await tagged.create_queue("jobs")
        msg_id = await tagged.send_message("jobs", "hello")
        raw: Redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            assert await raw.zscore("rsmq:{jobs}", msg_id) is not None
            assert await raw.hget("rsmq:{jobs}:Q", msg_id) == "hello"
            assert await raw.exists("rsmq:jobs", "rsmq:jobs:Q") == 0
        finally:
            await raw.aclose()
    finally:
        for q in (plain, tagged, on_cluster):
            await q.close()


# --- operations on a real cluster ------------------------------------------------------------


async def test_queues_spread_over_every_master(redis_cluster: RedisCluster3, cq: Queues) -> None:
    names = [f"q{i}" for i in range(12)]
    async with asyncio.timeout(30):
        for name in names:
            await cq.create_queue(name, vt=5)
        assert await cq.list_queues() == sorted(names)
        owners = {redis_cluster.master_for_key(cq.keys.messages(n)).port for n in names}
        assert len(owners) == 3
        ids = {name: await cq.send_message(name, f"body of {name}") for name in names}
        counts = await cq.visible_counts(names)
        assert counts == dict.fromkeys(names, 1)
        for name in names:
            got = await cq.receive_messages(name, 10)
            assert [(m.id, m.message, m.rc) for m in got] == [(ids[name], f"body of {name}", 1)]
        assert await cq.visible_counts([*names, names[0]]) == dict.fromkeys(names, 0)
        attrs = await cq.get_queue_attributes(names[0])
        assert (attrs.msgs, attrs.hiddenmsgs, attrs.totalrecv, attrs.totalsent) == (1, 1, 1, 1)
        assert await cq.change_messages_visibility(names[0], [ids[names[0]]], 0) == 1
        popped = await cq.pop_message(names[0])
        assert popped is not None and popped.rc == 2
        assert await cq.delete_messages(names[1], [ids[names[1]]]) == 1
        assert await cq.next_visible_at(names[2]) is not None
        assert await cq.now_ms() > 1_700_000_000_000


async def test_delete_queue_updates_registry_without_cross_slot_transaction(
    cq: Queues, cluster_url: str
) -> None:
    async with asyncio.timeout(20):
        await cq.create_queue("gone")
        await cq.send_message("gone", "x")
        await cq.delete_queue("gone")
        assert await cq.list_queues() == []
        assert not await cq.queue_exists("gone")
        with pytest.raises(QueueNotFound):
            await cq.delete_queue("gone")
        with pytest.raises(QueueNotFound):
            await cq.send_message("gone", "x")


async def test_dead_letter_queue_must_share_the_slot(cq: Queues) -> None:
    async with asyncio.timeout(20):
        await cq.create_queue("other")
        await cq.create_queue("work")
        far = "other" if slot("rsmq:{other}") != slot("rsmq:{work}") else "x"
        with pytest.raises(InvalidValue, match="same Redis Cluster slot"):
            await cq.set_queue_attributes("work", max_receive_count=1, dead_letter_queue=far)
        with pytest.raises(InvalidValue, match="same Redis Cluster slot"):
            await cq.create_queue("work2", max_receive_count=1, dead_letter_queue=far)
        # A dead-letter queue in the same slot works exactly as on one server.
        dead = same_slot_name("work")
        await cq.create_queue(dead)
        await cq.set_queue_attributes("work", max_receive_count=1, dead_letter_queue=dead)
        msg_id = await cq.send_message("work", "poison")
        assert (await cq.receive_message("work", vt=0)) is not None
        assert await cq.receive_message("work", vt=0) is None
        moved = await cq.receive_message(dead)
        assert moved is not None and (moved.id, moved.message) == (msg_id, "poison")


async def test_one_off_send_message_with_cluster_url(cq: Queues, cluster_url: str) -> None:
    async with asyncio.timeout(20):
        msg_id = await send_message("oneoff", "hi", redis_url=cluster_url, create=True)
        msg = await cq.receive_message("oneoff")
        assert msg is not None and msg.id == msg_id


# --- realtime over sharded pub/sub -----------------------------------------------------------


async def test_cluster_listener_gets_sharded_notifications(
    redis_cluster: RedisCluster3, cq: Queues, cluster_url: str
) -> None:
    names = [f"rt{i}" for i in range(6)]
    owners = {redis_cluster.master_for_key(cq.keys.messages(n)).port for n in names}
    assert len(owners) >= 2  # the listener really reads several masters
    listener = RealtimeListener(cluster_url, ns="rsmq", backoff_min=0.05, backoff_max=0.2)
    assert isinstance(listener.transport, ShardedTransport)
    try:
        async with asyncio.timeout(30):
            for name in names:
                await cq.create_queue(name)
                assert await listener.subscribe(name) is True
            assert listener.queues == set(names)
            await cq.create_queue("quiet")
            await cq.send_message("quiet", "not subscribed")
            for name in reversed(names):
                await cq.send_message(name, "x")
                assert await next_queue(listener) == name
            await listener.unsubscribe(names[0])
            await cq.send_message(names[0], "after unsubscribe")
            await cq.send_message(names[1], "y")
            assert await next_queue(listener) == names[1]
            assert listener.connections == 1
    finally:
        await listener.aclose()


async def test_cluster_listener_pings_keep_an_idle_link(cq: Queues, cluster_url: str) -> None:
    listener = RealtimeListener(cluster_url, ping_interval=0.2, backoff_min=0.05)
    try:
        async with asyncio.timeout(20):
            await cq.create_queue("idle")
            assert await listener.subscribe("idle") is True
            # Several ping rounds on an idle link (7 intervals): answered, so no reconnect.
            await asyncio.sleep(1.5)  # the idle period under test, not synchronisation
            assert listener.connections == 1
            await cq.send_message("idle", "x")
            assert await next_queue(listener) == "idle"
    finally:
        await listener.aclose()


async def test_cluster_listener_from_queues_client_and_callback(cq: Queues) -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()
    assert isinstance(cq.redis, RedisCluster)
    listener = RealtimeListener(cq.redis, ns=cq.ns, callback=seen.put_nowait)
    try:
        async with asyncio.timeout(20):
            await cq.create_queue("cb")
            assert await listener.subscribe("cb") is True
            await cq.send_message("cb", "x")
            assert await seen.get() == "cb"
    finally:
        await listener.aclose()
    assert await cq.redis.ping()  # the shared client is not closed by the listener


async def test_sharded_listener_on_one_server(redis_url: str) -> None:
    queues = Queues.from_url(redis_url, realtime=True, layout="cluster")
    listener = RealtimeListener(redis_url, layout="cluster", backoff_min=0.05)
    try:
        async with asyncio.timeout(20):
            await queues.create_queue("solo")
            assert await listener.subscribe("solo") is True
            await queues.send_message("solo", "x")
            assert await next_queue(listener) == "solo"
    finally:
        await listener.aclose()
        await queues.close()


# --- failover ---------------------------------------------------------------------------------


async def test_queue_and_listener_survive_a_master_failover(
    cluster_factory: Callable[..., RedisCluster3],
) -> None:
    cluster = cluster_factory(replicas=1)
    queues = Queues.from_url(cluster.url, realtime=True)
    listener = RealtimeListener(cluster.url, backoff_min=0.05, backoff_max=0.5)
    raw = redis_from_url(cluster.url)
    assert isinstance(raw, RedisCluster)
    try:
        async with asyncio.timeout(60):
            await queues.create_queue("orders")
            assert await listener.subscribe("orders") is True
            first = await queues.send_message("orders", "before failover")
            assert await next_queue(listener) == "orders"
            await raw.initialize()
            node = raw.get_node_from_key(queues.keys.messages("orders"))
            await raw.execute_command("WAIT", 1, 2000, target_nodes=node)
            owner = cluster.master_for_key(queues.keys.messages("orders"))
            await asyncio.to_thread(cluster.kill_master, owner)
            # Same Queues object: the message written before the failover is still there.
            msg = await queues.receive_message("orders", vt=0)
            assert msg is not None and msg.id == first
            # The listener reconnects to the new master and reports its queues once ...
            assert await next_queue(listener, timeout=30) == "orders"
            assert listener.connections >= 2
            # ... and notifications flow again.
            second = await queues.send_message("orders", "after failover")
            assert await next_queue(listener) == "orders"
            got = await queues.receive_messages("orders", 10)
            assert {m.id for m in got} == {first, second}
            # A graceful manual failover: the old master stays up but loses the slot, and
            # Redis drops our shard subscription there (sunsubscribe); the listener follows.
            connections = listener.connections
            await asyncio.to_thread(cluster.restart, owner)  # back as a replica
            await asyncio.to_thread(cluster.failover, owner)  # and promoted again
            assert await next_queue(listener, timeout=30) == "orders"
            assert listener.connections > connections
            third = await queues.send_message("orders", "after manual failover")
            assert await next_queue(listener) == "orders"
            assert cluster.master_for_key(queues.keys.messages("orders")).port == owner.port
            got = await queues.receive_messages("orders", 10, vt=0)
            assert third in {m.id for m in got}
    finally:
        await listener.aclose()
        await queues.close()
        await raw.aclose()


async def test_unreachable_cluster_fails_promptly() -> None:
    from wsmq.testing.redisproc import free_port

    queues = Queues.from_url(f"redis+cluster://127.0.0.1:{free_port()}", connect_timeout=1)
    try:
        async with asyncio.timeout(20):
            with pytest.raises(
                (redis.exceptions.ConnectionError, redis.exceptions.RedisClusterException)
            ):
                await queues.list_queues()
    finally:
        await queues.close()

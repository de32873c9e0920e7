"""Live resharding of a Redis Cluster under a queue in use (issue #7).

A queue's slot is moved by hand from one master to another the way ``redis-cli --cluster
reshard`` does it (``CLUSTER SETSLOT IMPORTING/MIGRATING``, ``MIGRATE`` in batches of keys,
``CLUSTER SETSLOT NODE``), while a publisher sends and the delivery engine (what a gateway node
runs) receives and acks.  Two windows are held open on purpose, so that the queue scripts meet
both redirections for real: the queue's hash migrated without its sorted set (multi-key scripts
get ``TRYAGAIN``, for longer than redis-py's own patience), then every key on the new node but
the slot not yet handed over (``ASK``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aredis
from redis.crc import key_slot

from wsmq.connections import BoundedRedisCluster, redis_from_url
from wsmq.engine.delivery import DeliveryEngine
from wsmq.queue import Message, Queues, RealtimeListener
from wsmq.realtime.sharded import ShardedTransport
from wsmq.testing.redisproc_cluster import RedisCluster3

QNAME = "reshard"
#: The queue's keys split between the two nodes this long: longer than redis-py retries
#: TRYAGAIN (16 attempts, about 0.4 s), so wsmq's own retry is what rides it out.
SPLIT_SECONDS = 0.8
#: All keys moved, slot still owned by the source: every queue command is redirected (ASK).
ASK_SECONDS = 0.3


def node_client(port: int) -> aredis.Redis:
    return aredis.Redis(host="127.0.0.1", port=port, decode_responses=True)


async def cmd(client: aredis.Redis, *args: object) -> Any:
    """One raw command to one node (``CLUSTER SETSLOT``, ``MIGRATE`` ...)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


async def error_counts(port: int) -> dict[str, int]:
    """``INFO errorstats`` of one node: error replies by prefix (ASK, TRYAGAIN, MOVED ...)."""
    client = node_client(port)
    try:
        info = await client.info("errorstats")
    finally:
        await client.aclose()
    return {k.removeprefix("errorstat_"): int(v["count"]) for k, v in info.items()}


async def move_slot(
    cluster: RedisCluster3, slot: int, src: int, dst: int, *, first: str, split: float, ask: float
) -> None:
    """Move ``slot`` from port ``src`` to port ``dst``: key ``first`` alone, ``split`` s later
    the others (10 per ``MIGRATE``, as redis-cli), ``ask`` s later the slot itself."""
    clients = {n.port: node_client(n.port) for n in cluster.masters()}
    source, target = clients[src], clients[dst]

    async def migrate(*keys: str) -> None:
        await cmd(source, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)

    try:
        src_id = await cmd(source, "CLUSTER", "MYID")
        dst_id = await cmd(target, "CLUSTER", "MYID")
        await cmd(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        await cmd(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        await migrate(first)
        await asyncio.sleep(split)  # the scenario: keys split between the nodes this long
        while keys := await cmd(source, "CLUSTER", "GETKEYSINSLOT", slot, 10):
            await migrate(*keys)
        await asyncio.sleep(ask)  # the scenario: everything moved, slot not handed over yet
        # The new owner first, then the old one (which drops its shard subscribers), then the
        # rest, so no node sends a client back to a node that no longer serves the slot.
        for client in (target, source, *(c for p, c in clients.items() if p not in (src, dst))):
            await cmd(client, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    finally:
        for client in clients.values():
            await client.aclose()


async def test_ask_redirect_runs_on_the_connection_that_sent_asking(
    cluster_factory: Callable[..., RedisCluster3],
) -> None:
    """redis-py 8 sends ASKING and the redirected command on two checkouts from a FIFO free
    list: with two idle connections to the target they differ, and the command ping-pongs
    (MOVED, ASK, ...) until "TTL exhausted".  BoundedRedisCluster makes them one connection."""
    cluster = cluster_factory()
    client = redis_from_url(cluster.url, decode_responses=True)
    assert isinstance(client, BoundedRedisCluster)
    key = "{ask}:key"
    slot = int(key_slot(key.encode()))
    try:
        async with asyncio.timeout(15):
            await client.set(key, "v")
            src = cluster.master_for_key(key).port
            dst = next(n.port for n in cluster.masters() if n.port != src)
            target = client.get_node("127.0.0.1", dst)
            assert target is not None
            # Two idle connections to the target node.
            await asyncio.gather(*(target.execute_command("PING") for _ in range(2)))
            admin = {p: node_client(p) for p in (src, dst)}
            try:
                src_id = await cmd(admin[src], "CLUSTER", "MYID")
                dst_id = await cmd(admin[dst], "CLUSTER", "MYID")
                await cmd(admin[dst], "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
                await cmd(admin[src], "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
                await cmd(admin[src], "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", key)
                await cmd(admin[dst], "CONFIG", "RESETSTAT")
                assert await client.get(key) == "v"  # ASK from src, served by dst
                stats = await admin[dst].info("commandstats")
            finally:
                for c in admin.values():
                    await c.aclose()
    finally:
        await client.aclose()
    assert stats["cmdstat_asking"]["calls"] == 1
    assert stats["cmdstat_get"]["calls"] == 1 and stats["cmdstat_get"]["rejected_calls"] == 0


class Sink:
    """A v1 subscriber: records each message and hands it to the acker."""

    ack_mode = True

    def __init__(self) -> None:
        self.got: list[Message] = []
        self.to_ack: asyncio.Queue[Message] = asyncio.Queue()
        self.arrived = asyncio.Condition()

    def window(self) -> int:
        return 1000

    async def deliver(self, msg: Message) -> bool:
        self.got.append(msg)
        self.to_ack.put_nowait(msg)
        async with self.arrived:
            self.arrived.notify_all()
        return True


async def test_live_reshard_loses_nothing_and_delivery_follows_the_slot(
    cluster_factory: Callable[..., RedisCluster3], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wsmq")
    cluster = cluster_factory()
    publisher = Queues.from_url(cluster.url, realtime=True)
    consumer = Queues.from_url(cluster.url, realtime=True)
    listener = RealtimeListener(cluster.url, backoff_min=0.05, backoff_max=0.5)
    assert isinstance(listener.transport, ShardedTransport)
    outages: list[BaseException] = []
    # No fallback poll within the test: after the move only the realtime notifications, now
    # from the new owner, can wake the consumer.
    engine = DeliveryEngine(consumer, listener, poll_interval=60.0, on_redis_error=outages.append)
    sink = Sink()
    sent: list[str] = []
    sent_more = asyncio.Condition()
    send_errors: list[BaseException] = []
    not_acked: list[str] = []
    stop = asyncio.Event()
    slot = int(key_slot(publisher.keys.messages(QNAME).encode()))

    async def publish() -> None:
        i = 0
        while not stop.is_set():
            try:
                sent.append(await publisher.send_message(QNAME, f"m{i}"))
            except Exception as exc:  # any error surfaced to a publisher fails the test
                send_errors.append(exc)
            async with sent_more:
                sent_more.notify_all()
            i += 1
            await asyncio.sleep(0.005)  # a steady trickle, not synchronisation

    async def ack() -> None:
        while True:
            msg = await sink.to_ack.get()
            if not await engine.ack(sub, msg.id):
                not_acked.append(msg.id)
            sink.to_ack.task_done()

    async def sent_at_least(n: int) -> None:
        async with sent_more:
            await sent_more.wait_for(lambda: len(sent) >= n)

    async def received(n: int) -> None:
        async with sink.arrived:
            await sink.arrived.wait_for(lambda: {m.id for m in sink.got} >= set(sent[:n]))

    src = cluster.master_for_key(publisher.keys.messages(QNAME)).port
    dst = next(n.port for n in cluster.masters() if n.port != src)
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(20):
            await publisher.create_queue(QNAME, vt=30)
            await engine.start()
            sub = await engine.subscribe(QNAME, sink)
            tasks += [asyncio.create_task(publish()), asyncio.create_task(ack())]
            await sent_at_least(20)  # traffic before the move
            await received(20)
            before = (await error_counts(src), await error_counts(dst))
            connections = listener.connections

            await move_slot(
                cluster,
                slot,
                src,
                dst,
                first=publisher.keys.attributes(QNAME),
                split=SPLIT_SECONDS,
                ask=ASK_SECONDS,
            )
            assert cluster.master_for_key(publisher.keys.messages(QNAME)).port == dst
            await sent_at_least(len(sent) + 40)  # traffic after the move
            stop.set()
            await tasks[0]
            # Everything, including what was sent after the move, arrives without any poll.
            await received(len(sent))
            await sink.to_ack.join()
            assert (await publisher.get_queue_attributes(QNAME)).msgs == 0  # all acked
            after = (await error_counts(src), await error_counts(dst))
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with asyncio.timeout(15):
            await engine.stop()
            await listener.aclose()
            await consumer.close()
            await publisher.close()

    assert send_errors == [], [(type(e), str(e), e.__cause__) for e in send_errors]
    got = [m.id for m in sink.got]
    assert set(got) == set(sent)  # nothing lost (at least once), nothing foreign
    assert not_acked == []
    # The move really took the queue scripts through ASK and TRYAGAIN.
    asks = after[0].get("ASK", 0) - before[0].get("ASK", 0)
    tryagains = sum(
        a.get("TRYAGAIN", 0) - b.get("TRYAGAIN", 0) for a, b in zip(after, before, strict=True)
    )
    assert asks > 0 and tryagains > 0, (before, after)
    # The consumer kept going, without an outage episode or a failed cycle ...
    assert outages == [] and engine.health.episodes == 0
    assert "consumer of queue" not in caplog.text and "Redis unreachable" not in caplog.text
    # ... and the sharded subscription moved to the new owner.
    assert listener.connections > connections

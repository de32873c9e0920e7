"""``redis_from_url`` against a real Sentinel setup and a real 3-master Redis Cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from wsmq.connections import broadcast_pubsub_client, redis_from_url
from wsmq.testing.redisproc import free_port
from wsmq.testing.redisproc_cluster import RedisCluster3, SentinelSetup

# --- Sentinel ---------------------------------------------------------------------------------


async def test_sentinel_url_reaches_the_master(
    sentinel_setup: SentinelSetup, sentinel_url: str
) -> None:
    client = redis_from_url(sentinel_url, decode_responses=True)
    try:
        async with asyncio.timeout(10):
            assert isinstance(client, Redis)
            await client.set("greeting", "hello")
            role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
            assert role[0] == "master"
            info = await client.info("server")
            assert info["tcp_port"] == sentinel_setup.current_master().port
            assert await client.get("greeting") == "hello"
    finally:
        await client.aclose()


async def test_sentinel_client_survives_a_failover(
    sentinel_factory: Callable[..., SentinelSetup],
) -> None:
    setup = sentinel_factory()
    client = redis_from_url(setup.url, decode_responses=True)
    try:
        async with asyncio.timeout(40):
            await client.set("before", "1")
            # Acknowledged by the replica, so the promoted replica must have it.
            assert await client.execute_command("WAIT", 1, 2000) == 1
            old_port = (await client.info("server"))["tcp_port"]
            new_master = await asyncio.to_thread(setup.kill_master)
            assert new_master.port != old_port
            # Same client object, no application-level retry: the stale connection fails,
            # redis-py's Retry reconnects and the Sentinel pool asks for the new master.
            await client.set("after", "2")
            assert (await client.info("server"))["tcp_port"] == new_master.port
            assert await client.mget("before", "after") == ["1", "2"]
            # The old master comes back as a replica of the new one (sentinels reconfigure it).
            old_master = next(n for n in setup.data_nodes if n is not new_master)
            await asyncio.to_thread(setup.restart, old_master)
            assert setup.current_master() is new_master
            # It replicates again once the sentinels have reconfigured it and a sync finished
            # (seconds on a busy machine): WAIT blocks until then (bounded by the 40 s above).
            try:
                async with asyncio.timeout(15):
                    while await client.execute_command("WAIT", 1, 1000) != 1:
                        pass
            except TimeoutError:
                state = {n.port: _replication(n.port) for n in setup.data_nodes}
                raise AssertionError(f"no replica acknowledged; replication: {state}") from None
    finally:
        await client.aclose()


# --- Cluster ----------------------------------------------------------------------------------


async def test_cluster_set_get_across_slots(redis_cluster: RedisCluster3, cluster_url: str) -> None:
    # Only one startup node: the client must discover the others and route by slot.
    first = cluster_url.split(",")[0]
    client = redis_from_url(first, decode_responses=True)
    try:
        async with asyncio.timeout(20):
            assert isinstance(client, RedisCluster)
            keys = [f"key:{i}" for i in range(60)]
            for i, key in enumerate(keys):
                await client.set(key, str(i))
            assert [await client.get(k) for k in keys] == [str(i) for i in range(60)]
            owners = {redis_cluster.master_for_key(k).port for k in keys}
            assert len(owners) == 3  # the keys really are spread over every master
            # Hash tags keep related keys on one slot, so multi-key commands work.
            await client.mset({"{q1}:a": "x", "{q1}:b": "y"})
            assert await client.mget("{q1}:a", "{q1}:b") == ["x", "y"]
    finally:
        await client.aclose()


async def test_cluster_cross_slot_multi_key_is_refused(cluster_url: str) -> None:
    client = redis_from_url(cluster_url)
    try:
        async with asyncio.timeout(10):
            # redis-py >= 8.2 refuses it client-side; older versions send it and Redis refuses.
            refused = (redis.exceptions.ResponseError, redis.exceptions.RedisClusterException)
            with pytest.raises(refused, match=r"same (key )?slot"):
                await client.execute_command("MGET", "a", "b")
    finally:
        await client.aclose()


async def test_sharded_pubsub_on_cluster(cluster_url: str) -> None:
    subscriber = redis_from_url(cluster_url, role="pubsub", decode_responses=True)
    publisher = redis_from_url(cluster_url, decode_responses=True)
    assert isinstance(subscriber, RedisCluster) and isinstance(publisher, RedisCluster)
    try:
        async with asyncio.timeout(10):
            # A cluster client learns the slot map lazily; pub/sub needs it up front.
            await subscriber.initialize()
            pubsub = subscriber.pubsub()
            try:
                await pubsub.ssubscribe("rsmq:rt:{jobs}")
                while True:  # the subscription confirmation arrives first
                    msg = await pubsub.get_sharded_message(timeout=1.0)
                    if msg and msg["type"] == "ssubscribe":
                        break
                assert await publisher.spublish("rsmq:rt:{jobs}", "3") == 1
                while True:
                    msg = await pubsub.get_sharded_message(timeout=1.0)
                    if msg and msg["type"] == "smessage":
                        break
                assert (msg["channel"], msg["data"]) == ("rsmq:rt:{jobs}", "3")
            finally:
                await pubsub.aclose()
    finally:
        await subscriber.aclose()
        await publisher.aclose()


async def test_cluster_client_follows_a_failover(
    cluster_factory: Callable[..., RedisCluster3],
) -> None:
    cluster = cluster_factory(replicas=1)
    client = redis_from_url(cluster.url, decode_responses=True)
    try:
        async with asyncio.timeout(45):
            assert isinstance(client, RedisCluster)
            await client.set("{orders}:k", "v1")
            owner = cluster.master_for_key("{orders}:k")
            node = client.get_node_from_key("{orders}:k")
            assert await client.execute_command("WAIT", 1, 2000, target_nodes=node) == 1
            await asyncio.to_thread(cluster.kill_master, owner)
            # After the replica took over, the same client re-reads the slot map and goes on.
            assert await client.get("{orders}:k") == "v1"
            await client.set("{orders}:k", "v2")
            assert cluster.master_for_key("{orders}:k").port != owner.port
            # The old master comes back as a replica of the new one; writes keep working.
            await asyncio.to_thread(cluster.restart, owner)
            assert cluster.role(owner) == "slave"
            assert await client.get("{orders}:k") == "v2"
    finally:
        await client.aclose()


async def test_broadcast_pubsub_client_hears_cluster_wide_publish(cluster_url: str) -> None:
    # The first startup node is dead: the helper moves on to the next one.
    dead = f"127.0.0.1:{free_port()}"
    url = cluster_url.replace("redis+cluster://", f"redis+cluster://{dead},")
    subscriber = await broadcast_pubsub_client(url, decode_responses=True, connect_timeout=1)
    publisher = redis_from_url(cluster_url, decode_responses=True)
    assert isinstance(subscriber, Redis) and not isinstance(subscriber, RedisCluster)
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    try:
        async with asyncio.timeout(10):
            await pubsub.subscribe("rsmq:wsmq:revoke")
            # Classic PUBLISH sent to every master reaches the one subscriber node.
            for node in (await _initialized(publisher)).get_primaries():
                await publisher.publish("rsmq:wsmq:revoke", node.name, target_nodes=node)
            heard: set[str] = set()
            while len(heard) < 3:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None:
                    heard.add(msg["data"])
            assert len(heard) == 3
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        await subscriber.aclose()
        await publisher.aclose()


async def _initialized(client: object) -> RedisCluster:
    assert isinstance(client, RedisCluster)
    await client.initialize()
    return client


async def test_broadcast_pubsub_client_elsewhere_is_a_pubsub_client(
    sentinel_url: str,
) -> None:
    client = await broadcast_pubsub_client(sentinel_url)
    try:
        assert client.connection_pool.connection_kwargs["socket_timeout"] is None
        async with asyncio.timeout(10):
            assert await client.ping()
    finally:
        await client.aclose()
    with pytest.raises(redis.exceptions.ConnectionError, match="no cluster node reachable"):
        await broadcast_pubsub_client(f"redis+cluster://127.0.0.1:{free_port()}", connect_timeout=1)


def _replication(port: int) -> dict[str, str]:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True)
    try:
        info = client.info("replication")
        return {k: str(v) for k, v in info.items() if not k.startswith("master_repl")}
    finally:
        client.close()

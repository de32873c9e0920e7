"""One RealtimeListener class; the transport is chosen from the URL or client."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from wsmq.connections import redis_from_url, redis_retry
from wsmq.queue import RealtimeListener
from wsmq.realtime.pubsub import PubSubTransport
from wsmq.realtime.sharded import ShardedTransport

# Clients are lazy: nothing below connects, so unroutable ports are fine.
CLUSTER_URL = "redis+cluster://127.0.0.1:1"
SERVER_URL = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("url", "layout", "transport", "cluster_keys"),
    [
        (CLUSTER_URL, None, ShardedTransport, True),
        (SERVER_URL, None, PubSubTransport, False),
        (SERVER_URL, "cluster", PubSubTransport, True),
    ],
)
async def test_one_listener_class_for_every_deployment(
    url: str, layout: str | None, transport: type, cluster_keys: bool
) -> None:
    listener = RealtimeListener(url, layout=layout)
    try:
        assert type(listener) is RealtimeListener
        assert isinstance(listener.transport, transport)
        assert listener.keys.cluster is cluster_keys
    finally:
        await listener.aclose()


async def test_a_cluster_client_gives_the_sharded_transport_and_stays_open() -> None:
    cluster = redis_from_url(CLUSTER_URL)
    listener = RealtimeListener(cluster)
    assert type(listener) is RealtimeListener
    assert isinstance(listener.transport, ShardedTransport)
    await listener.aclose()
    await cluster.aclose()


async def test_a_cluster_only_has_the_cluster_layout() -> None:
    with pytest.raises(ValueError, match="only supports the cluster key layout"):
        RealtimeListener(CLUSTER_URL, layout="rsmq")
    with pytest.raises(ValueError, match="layout must be"):
        RealtimeListener(SERVER_URL, layout="other")


async def test_listener_connections_never_retry_on_their_own() -> None:
    listener = RealtimeListener(SERVER_URL)
    try:
        transport = listener.transport
        assert isinstance(transport, PubSubTransport)
        client: Redis = transport.client
        retry = client.connection_pool.connection_kwargs["retry"]
        assert retry.get_retries() == 0
    finally:
        await listener.aclose()


def test_one_retry_policy() -> None:
    assert redis_retry(0).get_retries() == 0
    assert redis_retry().get_retries() == 3
    assert redis_retry(2, cap=0.5).get_retries() == 2


async def _subscribe_calls(raw: Redis) -> int:
    stats = await raw.info("commandstats")
    entry = stats.get("cmdstat_subscribe")
    return int(entry["calls"]) if entry else 0


async def test_a_burst_of_subscribes_goes_out_in_a_few_commands(
    redis_url: str, raw: Redis
) -> None:
    """A reconnect storm subscribes thousands of queues at once: one SUBSCRIBE per queue cost
    ~37 µs of node CPU each. Concurrent subscribes share commands, and each is confirmed."""
    listener = RealtimeListener(redis_url)
    try:
        await listener.start()
        async with asyncio.timeout(10):
            await listener.connected.wait()
        before = await _subscribe_calls(raw)
        names = [f"burst{i}" for i in range(300)]
        async with asyncio.timeout(10):
            confirmed = await asyncio.gather(*(listener.subscribe(n) for n in names))
        assert confirmed == [True] * len(names)
        assert await _subscribe_calls(raw) - before <= 3
        numsub = dict(await raw.pubsub_numsub(*(listener.channel(n) for n in names)))
        assert set(numsub.values()) == {1}
    finally:
        await listener.aclose()


async def test_a_channel_unsubscribed_before_its_subscribe_went_out_stays_unsubscribed(
    redis_url: str, raw: Redis
) -> None:
    listener = RealtimeListener(redis_url)
    try:
        await listener.start()
        async with asyncio.timeout(10):
            await listener.connected.wait()
        transport = listener.transport
        assert isinstance(transport, PubSubTransport)
        gone, kept = listener.channel("gone"), listener.channel("kept")
        await transport.subscribe(gone)  # queued for the next SUBSCRIBE, not written yet
        await transport.unsubscribe(gone)
        async with asyncio.timeout(10):
            assert await listener.subscribe("kept")  # written after: "gone" would be with it
        numsub = dict(await raw.pubsub_numsub(gone, kept))
        assert numsub == {gone: 0, kept: 1}
    finally:
        await listener.aclose()

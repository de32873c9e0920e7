"""The Python client against real nodes: a node stops mid-stream and nothing is lost."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.e2e.conftest import MakeUser, SpawnNode
from wsmq.backoff import Backoff
from wsmq.client import Client, ClientError, Disconnected, Event, connect
from wsmq.queue import Queues

N = 200
WINDOW = 20


async def queue_empty(queues: Queues, qname: str, within: float) -> None:
    """Poll the queue's counters until it holds no message (the client's acks all landed)."""
    async with asyncio.timeout(within):
        while (await queues.get_queue_attributes(qname)).msgs:
            await asyncio.sleep(0.05)


async def consume(
    client: Client, qname: str, sent: set[str], seen: list[str], halfway: asyncio.Event,
    all_seen: asyncio.Event, connections: set[int],
) -> None:  # fmt: skip
    """The application: handle each message, ack it, flag half and all of them seen."""
    async for d in client.subscribe(qname):
        seen.append(d.id)
        connections.add(d.generation)
        await d.ack()
        if len(seen) == N // 2:
            halfway.set()
        if len(seen) >= N and sent <= set(seen):
            all_seen.set()


@pytest.mark.backends("single")  # the client's failover is under test, not Redis deployments
@pytest.mark.parametrize(
    ("sig", "dedupe"), [(signal.SIGTERM, 0), (signal.SIGKILL, 1000)], ids=["sigterm", "sigkill"]
)
async def test_a_node_stopping_mid_stream_loses_nothing(
    spawn_node: SpawnNode,
    make_user: MakeUser,
    queues: Queues,
    redis_url: str,
    sig: signal.Signals,
    dedupe: int,
) -> None:
    # A small window: most messages are still in Redis when the first node stops.
    first = await spawn_node(redis_url, "--window", str(WINDOW))
    second = await spawn_node(redis_url, "--window", str(WINDOW))
    user = await make_user()
    qname = user.user_id
    await queues.create_queue(qname, vt=2)  # a SIGKILLed node's in-flight messages return soon
    sent = await queues.send_messages(qname, [f"m{i}" for i in range(N)])

    async def tokens() -> tuple[str, str]:
        return user.x_token, user.access_token

    events: list[Event] = []
    seen: list[str] = []
    halfway, all_seen = asyncio.Event(), asyncio.Event()
    connections: set[int] = set()
    async with connect(
        [first.url, second.url], tokens=tokens, shuffle=False, dedupe=dedupe,
        backoff=Backoff(base=0.05, cap=0.5), on_event=events.append,
    ) as client:  # fmt: skip
        consumer = asyncio.create_task(
            consume(client, qname, set(sent), seen, halfway, all_seen, connections)
        )
        async with asyncio.timeout(20):
            await halfway.wait()
        first.send_signal(sig)
        try:
            async with asyncio.timeout(30):
                await all_seen.wait()
            await queue_empty(queues, qname, within=30)
        finally:
            consumer.cancel()
    assert set(seen) == set(sent)
    assert connections == {1, 2}  # the stream went on over the second node's connection
    if dedupe:
        assert len(seen) == N  # every redelivery of a handled message was filtered
    closes = [e for e in events if isinstance(e, Disconnected) and e.node == first.url]
    assert closes and closes[0].code == (1001 if sig is signal.SIGTERM else 1006), events


@pytest.mark.backends("single")  # the client's frames are under test; e2e covers the backends
async def test_client_subscribes_as_devices_each_gets_every_message(
    spawn_node: SpawnNode, make_user: MakeUser, queues: Queues, redis_url: str
) -> None:
    node = await spawn_node(redis_url)
    user = await make_user()
    qname = user.user_id
    await queues.create_queue(qname)

    async def tokens() -> tuple[str, str]:
        return user.x_token, user.access_token

    async def device(name: str, n: int) -> list[str]:
        async with connect([node.url], tokens=tokens) as client:
            sub = client.subscribe(qname, device=name)
            assert sub.device == name
            got: list[str] = []
            async for d in sub:
                got.append(d.message)
                await d.ack()
                if len(got) == n:
                    return got
        raise AssertionError("the subscription ended early")

    with pytest.raises(ClientError):
        Client([node.url], tokens=tokens).subscribe(qname, device="bad:id")
    bodies = [f"m{i}" for i in range(10)]
    laptop = asyncio.create_task(device("laptop", 10))
    phone = asyncio.create_task(device("phone", 10))
    async with asyncio.timeout(20):
        while await queues.redis.zcard(queues.keys.devices(qname)) < 2:
            await asyncio.sleep(0.02)
        await queues.send_messages(qname, bodies)
        assert await laptop == bodies
        assert await phone == bodies

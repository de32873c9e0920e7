"""RevocationBus on real private redis-servers: cross-connection delivery and reconnects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis

from wsmq.auth import RevocationBus
from wsmq.auth.revocation import decode_revocation, encode_revocation
from wsmq.testing.redisproc import RedisProcess


async def wait_subscribed(url: str, channel: str, count: int = 1) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        async with asyncio.timeout(5):
            while True:
                numsub = dict(await client.pubsub_numsub(channel))
                if numsub.get(channel.encode(), 0) >= count:
                    return
                await asyncio.sleep(0.01)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def collecting(
    bus: RevocationBus, on_reconnect: Callable[[], None] | None = None
) -> AsyncIterator[asyncio.Queue[str]]:
    got: asyncio.Queue[str] = asyncio.Queue()

    async def consume() -> None:
        async for user_id in bus.revocations(on_reconnect=on_reconnect):
            got.put_nowait(user_id)

    task = asyncio.create_task(consume())
    try:
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_revocation_reaches_another_connection_within_a_second(redis_url: str) -> None:
    node = RevocationBus(redis_url, ns="ns1")
    cli = RevocationBus(redis_url, ns="ns1")
    other_ns = RevocationBus(redis_url, ns="ns2")
    async with collecting(node) as got:
        await wait_subscribed(redis_url, "ns1:wsmq:revoke")
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert await cli.revoke("user-1") == 1
        async with asyncio.timeout(1):
            assert await got.get() == "user-1"
        assert loop.time() - start < 1.0
        assert await other_ns.revoke("user-2") == 0  # namespaces are separate
        # Junk on the channel is ignored, the stream goes on.
        raw = aioredis.Redis.from_url(redis_url)
        await raw.publish("ns1:wsmq:revoke", b"\x80not json")
        await raw.publish("ns1:wsmq:revoke", '{"userId": 5}')
        await raw.aclose()
        await cli.revoke("user-3")
        async with asyncio.timeout(1):
            assert await got.get() == "user-3"
    for bus in (node, cli, other_ns):
        await bus.aclose()


async def test_subscriber_reconnects_after_redis_restart(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    proc = redis_factory()
    reconnected = asyncio.Event()
    node = RevocationBus(proc.url, max_backoff=0.2)
    async with collecting(node, on_reconnect=reconnected.set) as got:
        await wait_subscribed(proc.url, "rsmq:wsmq:revoke")
        async with asyncio.timeout(5):
            await reconnected.wait()  # the first subscription calls it too
        reconnected.clear()
        proc.restart()
        async with asyncio.timeout(10):
            await reconnected.wait()
        await wait_subscribed(proc.url, "rsmq:wsmq:revoke")
        cli = RevocationBus(proc.url)
        assert await cli.revoke("after-restart") == 1
        async with asyncio.timeout(1):
            assert await got.get() == "after-restart"
        await cli.aclose()


async def test_a_first_subscription_after_an_outage_calls_on_reconnect(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    # Redis down when the node starts: sockets admitted meanwhile (tokens checked against the
    # store) may have missed a logout, so the first subscription must trigger the re-check too.
    proc = redis_factory()
    proc.stop()
    subscribed = asyncio.Event()
    node = RevocationBus(proc.url, max_backoff=0.2)
    async with collecting(node, on_reconnect=subscribed.set):
        proc.start()
        async with asyncio.timeout(10):
            await subscribed.wait()


async def test_subscriber_survives_a_permission_error_and_keeps_retrying(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    # An ACL user without SUBSCRIBE gets NOPERM: the iterator must not end (the node would stop
    # closing revoked sockets); once the permission is granted, revocations flow.
    proc = redis_factory()
    admin = aioredis.Redis.from_url(proc.url)
    await admin.acl_setuser(
        "node",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-subscribe"],
    )
    url = f"redis://node:pw@{proc.host}:{proc.port}/0"
    node = RevocationBus(url, max_backoff=0.2)
    async with collecting(node) as got:
        async with asyncio.timeout(5):  # the denied SUBSCRIBE shows up in Redis's ACL LOG
            while not await admin.acl_log():
                await asyncio.sleep(0.01)
        await admin.acl_setuser("node", enabled=True, commands=["+subscribe"])
        await wait_subscribed(proc.url, "rsmq:wsmq:revoke")
        assert await RevocationBus(proc.url).revoke("granted") == 1
        async with asyncio.timeout(5):
            assert await got.get() == "granted"
    await admin.aclose()
    await node.aclose()


def test_message_format() -> None:
    assert encode_revocation("abc") == '{"userId":"abc"}'
    assert decode_revocation(b'{"userId":"abc"}') == "abc"
    for junk in (b"", b"null", b"[]", b'{"userId": ""}', b'{"userId": 1}', b"\xff"):
        assert decode_revocation(junk) is None

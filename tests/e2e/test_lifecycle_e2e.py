"""Connection lifecycle edge cases on real nodes: acks racing an unsubscribe or a close, ack
floods while Redis is slow, cancelled handlers, connection limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from wsmq.gateway import Gateway, serve
from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess, free_port

from .conftest import (
    SECRET,
    V1,
    Cred,
    MakeUser,
    StartNode,
    connect,
    recv,
    recv_close,
    recv_type,
    subscribe,
    wait_for,
)


async def _receive_ids(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[str]:
    return [(await recv_type(ws, "message"))["id"] for _ in range(n)]


@pytest.mark.parametrize("then", ["unsubscribe", "close"])
async def test_acks_sent_before_unsubscribe_or_close_are_applied(
    then: str,
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
) -> None:
    """``/ack`` frames followed at once by ``/unsubscribe`` (or a close) delete the messages:
    the release on unsubscribe must not overtake acks the client sent before it."""
    node = await start_node(window=50)
    alice = await make_user()
    q = alice.user_id
    await queues.create_queue(q, vt=300)  # a wrong release would show as visible messages
    for i in range(40):
        await queues.send_message(q, f"m{i}")
    ws = await connect(http, node, alice)
    await subscribe(ws, q)
    ids = await _receive_ids(ws, 40)
    # Back to back: the server reads them from few TCP segments, without waiting in between.
    for msg_id in ids:
        await ws.send_str(f"/ack/{q}/{msg_id}")
    if then == "unsubscribe":
        await ws.send_str(f"/unsubscribe/{q}")
        acked: set[str] = set()
        async with asyncio.timeout(10):
            while True:
                frame = await recv(ws)
                if frame["type"] == "acked":
                    acked.add(frame["id"])
                elif frame["type"] == "unsubscribed":
                    break
                else:
                    raise AssertionError(f"unexpected frame {frame}")
        assert acked == set(ids)  # every ack answered before the unsubscribe
    await ws.close()

    async def all_deleted() -> bool:
        attrs = await queues.get_queue_attributes(q)
        return attrs.msgs == 0

    await wait_for(all_deleted)
    attrs = await queues.get_queue_attributes(q)
    assert (attrs.msgs, attrs.hiddenmsgs) == (0, 0)


# Single only: it stalls its own redis-server with DEBUG SLEEP (off on the shared deployments);
# the shared backend is unused, so the other backends would run the same test again.
@pytest.mark.backends("single")
async def test_ack_flood_while_redis_is_slow_stays_bounded(
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> None:
    """While Redis stalls, a client pouring ``/ack`` frames in does not grow server memory:
    the node stops reading that socket (TCP backpressure) instead of queueing a task per ack."""
    redis = redis_factory(extra_args=["--enable-debug-command", "yes"])
    node = await start_node(redis_url=redis.url, window=50, rate_limit=1e6, rate_burst=10**6)
    alice = await make_user()
    q = alice.user_id
    queues = Queues.from_url(redis.url)
    admin = aioredis.Redis.from_url(redis.url)
    try:
        await queues.create_queue(q, vt=300)
        for i in range(50):
            await queues.send_message(q, f"m{i}")
        ws = await connect(http, node, alice)
        await subscribe(ws, q)
        ids = await _receive_ids(ws, 50)
        stall = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "2"))  # type: ignore[no-untyped-call]
        await asyncio.sleep(0.1)  # the server is now asleep (an external condition)
        for msg_id in ids:  # real acks: each waits for the stalled Redis
            await ws.send_str(f"/ack/{q}/{msg_id}")

        async def flood() -> None:
            for i in range(20_000):
                await ws.send_str(f"/ack/{q}/bogus{i:027d}")

        acked: set[str] = set()

        async def read_replies() -> None:  # a real client reads while it writes
            while len(acked) < len(ids):
                frame = await recv(ws, timeout=20)
                if frame["type"] == "acked":
                    acked.add(frame["id"])

        reading = asyncio.create_task(read_replies())
        flooding = asyncio.create_task(flood())
        peak = 0
        for _ in range(15):
            await asyncio.sleep(0.1)
            peak = max(peak, len(node.state.tasks))
        # Ack slots = max(32, window) = 50, plus the node's own few tasks.
        assert peak <= 100, f"{peak} tasks queued for one socket's acks"
        await stall
        async with asyncio.timeout(20):
            await flooding
            await reading
        assert acked == set(ids)
        assert (await queues.get_queue_attributes(q)).msgs == 0
        await ws.close()
    finally:
        await queues.close()
        await admin.aclose()


async def test_handler_cancelled_mid_subscribe_leaves_no_subscription(
    redis_url: str, make_user: MakeUser, users_file: Any
) -> None:
    """A host app cancelling handlers of dropped peers (``handler_cancellation=True``): a
    cancellation landing inside the engine's subscribe must not leave a consumer behind."""
    app = web.Application()
    gateway: Gateway = await serve(
        app, redis_url=redis_url, secret=SECRET, users_file=str(users_file), poll_interval=0.2
    )
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    engine: Any = gateway.state.engine  # its subscribe is replaced
    real_subscribe = engine.subscribe
    entered, gate = asyncio.Event(), asyncio.Event()

    async def slow_subscribe(qname: str, sub: Any) -> Any:
        handle = await real_subscribe(qname, sub)
        entered.set()
        await gate.wait()  # e.g. the realtime listener's confirmation is slow
        return handle

    engine.subscribe = slow_subscribe
    try:
        alice = await make_user()
        async with aiohttp.ClientSession() as client:
            async with asyncio.timeout(5):
                ws = await client.ws_connect(
                    f"ws://127.0.0.1:{port}/", headers=alice.headers, protocols=V1
                )
            await ws.send_str(f"/subscribe/{alice.user_id}")
            async with asyncio.timeout(5):
                await entered.wait()
        # The client session is closed: the TCP connection is gone, the handler cancelled.
        async with asyncio.timeout(5):
            while gateway.state.connections:
                await asyncio.sleep(0.02)
        gate.set()

        async def no_subscription() -> bool:
            stats = engine.stats()
            return bool(stats["subscriptions"] == 0 and stats["consumers"] == 0)

        await wait_for(no_subscription)
    finally:
        gate.set()
        async with asyncio.timeout(10):
            await runner.cleanup()
    assert gateway.closed


@pytest.mark.parametrize("first_message_auth", [False, True])
async def test_max_connections_per_user(
    first_message_auth: bool,
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> None:
    node = await start_node(max_connections_per_user=2)
    alice, bob = await make_user(), await make_user()

    async def open_socket(cred: Cred) -> aiohttp.ClientWebSocketResponse:
        if not first_message_auth:
            return await connect(http, node, cred)
        ws = await connect(http, node)
        await ws.send_str(f"/auth {cred.x_token} {cred.access_token}")
        assert (await recv(ws))["type"] == "authenticated"
        return ws

    first, second = await open_socket(alice), await open_socket(alice)
    if first_message_auth:
        ws = await connect(http, node)
        await ws.send_str(f"/auth {alice.x_token} {alice.access_token}")
        assert await recv_close(ws) == 4429
    else:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await connect(http, node, alice)
        assert info.value.status == 429
    other = await open_socket(bob)  # the limit is per user
    await first.close()

    async def one_left() -> bool:
        return len(node.state.by_user.get(alice.user_id, ())) == 1

    await wait_for(one_left)
    third = await open_socket(alice)  # room again
    await subscribe(third, alice.user_id)
    for ws in (second, third, other):
        await ws.close()

    async def nobody_left() -> bool:
        return not node.state.by_user and not node.state.connections

    await wait_for(nobody_left)  # the indexes do not grow with closed sockets


async def test_heartbeat_cancelled_handler_still_releases_unacked(
    redis_url: str, make_user: MakeUser, users_file: Any, queues: Queues
) -> None:
    """Mounted on a host app whose server cancels handlers of lost peers: the heartbeat drops
    a peer that stopped answering, the handler is cancelled, its messages come back at once."""
    app = web.Application()
    gateway: Gateway = await serve(
        app, redis_url=redis_url, secret=SECRET, users_file=str(users_file), heartbeat=0.4
    )
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        alice = await make_user()
        q = alice.user_id
        await queues.create_queue(q, vt=300)
        await queues.send_message(q, "held by a peer that dies")
        async with aiohttp.ClientSession() as client:
            async with asyncio.timeout(5):
                ws = await client.ws_connect(
                    f"ws://127.0.0.1:{port}/", headers=alice.headers, protocols=V1
                )
            await subscribe(ws, q)
            await recv_type(ws, "message")
            # aiohttp's client answers pings only inside receive(): it is dead from here on.

            async def released() -> bool:
                attrs = await queues.get_queue_attributes(q)
                return (attrs.msgs, attrs.hiddenmsgs) == (1, 0)

            assert not await released()
            await wait_for(released, timeout=5)  # the heartbeat, not the 300 s vt
            assert not gateway.state.connections and not gateway.state.by_user
    finally:
        async with asyncio.timeout(10):
            await runner.cleanup()


# Single only: it freezes its own redis-server with SIGSTOP; the shared backend is unused, so
# the other backends would run the same test again.
@pytest.mark.backends("single")
async def test_shutdown_stays_within_shutdown_timeout_when_everything_hangs(
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> None:
    """Redis frozen (SIGSTOP: connections hang, nothing is refused) and a client that never
    answers the close handshake: ``close()`` still returns within ``shutdown_timeout``."""
    import os
    import signal
    import time

    redis = redis_factory()
    budget = 2.0
    node = await start_node(redis_url=redis.url, shutdown_timeout=budget, heartbeat=0)
    alice = await make_user()
    queues = Queues.from_url(redis.url)
    try:
        await queues.create_queue(alice.user_id, vt=300)
        await queues.send_message(alice.user_id, "held")
        ws = await connect(http, node, alice)
        await subscribe(ws, alice.user_id)
        await recv_type(ws, "message")  # held; from now on this client reads nothing
        assert redis.pid is not None
        os.kill(redis.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            async with asyncio.timeout(budget * 5):
                await node.close()
            elapsed = time.monotonic() - started
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        assert elapsed < budget + 0.5, f"shutdown took {elapsed:.2f}s"
        await ws.close()
    finally:
        await queues.close()

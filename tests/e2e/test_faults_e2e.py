"""Faults: a node killed mid-stream, Redis restarted mid-stream, Redis down, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from wsmq.backoff import Backoff
from wsmq.client import Client, Connected, Delivery, Disconnected, Event
from wsmq.client import connect as connect_client
from wsmq.gateway import Gateway
from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

from .conftest import (
    SECRET,
    Cred,
    MakeUser,
    StartNode,
    connect,
    recv_close,
    recv_type,
    subscribe,
    wait_for,
)


class Consumer:
    """An application on ``wsmq.client`` that acks everything; the client reconnects to
    ``urls`` in turn (the test is about the nodes, not about a hand-written client loop)."""

    def __init__(self, http: aiohttp.ClientSession, cred: Cred, urls: list[str]) -> None:
        self.http = http
        self.cred = cred
        self.urls = urls
        self.received: list[str] = []
        self.confirmed: set[str] = set()  # ids whose ack the server confirmed
        self.redelivered_after_ack: list[str] = []
        self.connections = 0
        self.close_codes: list[int | None] = []
        self.connected = asyncio.Event()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Connected):
            self.connections += 1
            self.connected.set()
        elif isinstance(event, Disconnected):
            self.close_codes.append(event.code)
            self.connected.clear()

    async def _tokens(self) -> tuple[str, str]:
        return self.cred.x_token, self.cred.access_token

    async def _ack(self, delivery: Delivery) -> None:
        if await delivery.ack(confirm=True):
            self.confirmed.add(delivery.id)

    async def _consume(self, client: Client) -> None:
        acks: set[asyncio.Task[None]] = set()
        async for d in client.subscribe(self.cred.user_id):
            if d.id in self.confirmed:
                self.redelivered_after_ack.append(d.id)
            self.received.append(d.id)
            task = asyncio.create_task(self._ack(d))
            acks.add(task)
            task.add_done_callback(acks.discard)

    async def run(self, until: Callable[[], bool]) -> None:
        async with connect_client(
            self.urls, tokens=self._tokens, on_event=self._on_event, heartbeat=2.0,
            backoff=Backoff(base=0.05, cap=0.5), shuffle=False, session=self.http,
        ) as client:  # fmt: skip
            consuming = asyncio.create_task(self._consume(client))
            try:
                # `until` depends on the publisher too: re-checked, not only on deliveries.
                while not until():
                    if consuming.done():
                        consuming.result()  # the error that ended the client
                        raise AssertionError("the subscription ended")
                    await asyncio.sleep(0.05)
            finally:
                consuming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consuming


async def publish(queues: Queues, qname: str, count: int, pause: float) -> list[str]:
    """Send ``count`` messages, retrying through Redis outages; the ids that were stored."""
    ids: list[str] = []
    i = 0
    while i < count:
        try:
            ids.append(await queues.send_message(qname, f"m{i}"))
            i += 1
        except Exception:  # Redis is restarting: try again
            await asyncio.sleep(0.05)
            continue
        await asyncio.sleep(pause)
    return ids


async def test_sigkill_node_mid_stream_client_moves_to_other_node(
    spawn_node: Callable[..., Any],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    redis_url: str,
) -> None:
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=1)
    doomed = await spawn_node(redis_url)
    survivor = await start_node()
    assert survivor.url is not None
    consumer = Consumer(http, alice, [doomed.url, survivor.url])
    total = 300
    sent: list[str] = []
    runner = asyncio.create_task(
        consumer.run(lambda: len(sent) == total and set(sent) <= set(consumer.received))
    )
    async with asyncio.timeout(10):
        await consumer.connected.wait()
    publisher = asyncio.create_task(publish(queues, alice.user_id, total, 0.002))
    async with asyncio.timeout(20):
        while len(consumer.received) < 50:
            await asyncio.sleep(0.01)
    doomed.proc.send_signal(signal.SIGKILL)
    sent.extend(await asyncio.wait_for(publisher, 30))
    async with asyncio.timeout(30):
        await runner
    assert set(sent) <= set(consumer.received)
    assert consumer.connections >= 2
    assert consumer.redelivered_after_ack == []  # duplicates only for unconfirmed ones
    duplicates = len(consumer.received) - len(set(consumer.received))
    assert duplicates <= 150, duplicates  # bounded by what was in flight on the dead node


# Single only: it starts and restarts its own redis-server (the shared backend is unused);
# failovers on Cluster and Sentinel are covered in tests/scaleout.
@pytest.mark.backends("single")
async def test_redis_restart_mid_stream(
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> None:
    redis = redis_factory(appendonly=True)
    node = await start_node(redis_url=redis.url)
    alice = await make_user()
    queues = Queues.from_url(redis.url)
    await queues.create_queue(alice.user_id, vt=2)
    assert node.url is not None
    consumer = Consumer(http, alice, [node.url])
    total = 200
    sent: list[str] = []
    runner = asyncio.create_task(
        consumer.run(lambda: len(sent) == total and set(sent) <= set(consumer.received))
    )
    async with asyncio.timeout(10):
        await consumer.connected.wait()
    publisher = asyncio.create_task(publish(queues, alice.user_id, total, 0.005))
    async with asyncio.timeout(20):
        while len(consumer.received) < 40:
            await asyncio.sleep(0.01)
    await asyncio.to_thread(redis.restart)
    sent.extend(await asyncio.wait_for(publisher, 60))
    async with asyncio.timeout(60):
        await runner
    assert set(sent) <= set(consumer.received)
    assert consumer.connections == 1  # the socket stayed open through the outage
    await queues.close()


# Single only: it starts and kills its own redis-server (the shared backend is unused);
# failovers on Cluster and Sentinel are covered in tests/scaleout.
@pytest.mark.backends("single")
async def test_readyz_fails_while_redis_is_down(
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> None:
    redis = redis_factory(appendonly=True)
    node = await start_node(redis_url=redis.url)
    alice = await make_user()
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)

    async def ready_status() -> tuple[int, dict[str, Any]]:
        async with asyncio.timeout(5), http.get(f"{node.http_url}/readyz") as resp:
            return resp.status, await resp.json()

    assert (await ready_status())[0] == 200
    await asyncio.to_thread(redis.kill)
    status, body = await ready_status()
    assert status == 503 and body["checks"]["redis"] != "ok"
    async with http.get(f"{node.http_url}/healthz") as resp:
        assert resp.status == 200  # alive, just not ready
    await asyncio.to_thread(redis.start)

    async def ready_again() -> bool:
        return (await ready_status())[0] == 200

    await wait_for(ready_again, timeout=10)
    assert not ws.closed  # clients were never dropped
    queues = Queues.from_url(redis.url)
    await queues.send_message(alice.user_id, "after the outage")
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            assert msg.type is aiohttp.WSMsgType.TEXT
            if "after the outage" in msg.data:
                break
    await queues.close()
    await ws.close()


async def test_sigterm_graceful_shutdown_of_subprocess(
    spawn_node: Callable[..., Any],
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    queues: Queues,
    redis_url: str,
) -> None:
    node = await spawn_node(redis_url)
    alice = await make_user()
    await queues.create_queue(alice.user_id, vt=300)
    await queues.send_message(alice.user_id, "in flight at shutdown")
    async with asyncio.timeout(5):
        ws = await http.ws_connect(node.url, headers=alice.headers, protocols=("wsmq.v1",))
    await subscribe(ws, alice.user_id)
    async with asyncio.timeout(10):
        while (await queues.get_queue_attributes(alice.user_id)).hiddenmsgs != 1:
            await asyncio.sleep(0.02)
    started = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    assert await recv_close(ws, timeout=10) == 1001
    async with asyncio.timeout(10):
        code = await node.proc.wait()
    assert code == 0
    assert time.monotonic() - started < 3 + 4  # shutdown_timeout plus process exit
    attrs = await queues.get_queue_attributes(alice.user_id)
    assert (attrs.msgs, attrs.hiddenmsgs) == (1, 0)  # released, not left hidden for 300 s
    with contextlib.suppress(Exception):
        await ws.close()
    log = node.log_path.read_text()
    assert "shutdown complete" in log
    for secret in (alice.x_token, alice.access_token, SECRET, "in flight at shutdown"):
        assert secret not in log  # no tokens, no secret, no message bodies


async def test_gateway_handle_mounts_on_host_app(
    redis_url: str, http: aiohttp.ClientSession
) -> None:
    """``serve(app)``: the host runs the server; the gateway closes with the app."""
    from aiohttp import web

    from wsmq.gateway import serve
    from wsmq.testing.redisproc import free_port

    app = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="host app")

    app.router.add_get("/hello", hello)

    async def authenticate(request: web.Request) -> Any:
        return request.cookies.get("session")  # a user id, or None

    gateway: Gateway = await serve(
        app, redis_url=redis_url, path="/ws", authenticate=authenticate, secret=None
    )
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with http.get(f"http://127.0.0.1:{port}/hello") as resp:
            assert await resp.text() == "host app"
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"http://127.0.0.1:{port}/ws")
        assert info.value.status == 401
        async with asyncio.timeout(5):
            ws = await http.ws_connect(
                f"http://127.0.0.1:{port}/ws", protocols=("wsmq.v1",),
                headers={"Cookie": "session=cookie-user"},
            )  # fmt: skip
        await subscribe(ws, "cookie-user")
        await ws.send_str("/subscribe/other")
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame["code"] == "forbidden"
        close_code = asyncio.create_task(recv_close(ws))
    finally:
        async with asyncio.timeout(10):
            await runner.cleanup()  # the host app shuts down: so does the gateway
    assert gateway.closed
    assert await close_code == 1001


# Single only: it starts and kills its own redis-server (the shared backend is unused);
# failovers on Cluster and Sentinel are covered in tests/scaleout.
@pytest.mark.backends("single")
async def test_shutdown_is_bounded_while_redis_is_down(
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> None:
    redis = redis_factory()
    node = await start_node(redis_url=redis.url, shutdown_timeout=2.0)
    alice = await make_user()
    queues = Queues.from_url(redis.url)
    await queues.create_queue(alice.user_id)
    await queues.send_message(alice.user_id, "held")
    await queues.close()
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    await recv_type(ws, "message")
    await asyncio.to_thread(redis.kill)
    closing = asyncio.create_task(recv_close(ws))
    started = time.monotonic()
    async with asyncio.timeout(10):
        await node.close()
    assert time.monotonic() - started < 2.0 + 2.0  # shutdown_timeout plus a margin
    assert await closing == 1001

"""The Python client against scripted nodes: close-code policy, resubscribe, acks, refresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.client.scripted import STEP, Conn, GatedBackoff, ScriptedNode
from wsmq.backoff import Backoff
from wsmq.client import (
    AuthenticationFailed,
    Client,
    ClientError,
    Connected,
    Connecting,
    ConnectionClosed,
    Delivery,
    Disconnected,
    Event,
    EventStream,
    Subscribed,
    Subscription,
    TokenRefreshed,
    connect,
)

ID1, ID2, ID3 = ("a" * 32, "b" * 32, "c" * 32)


@pytest.fixture
async def nodes() -> AsyncIterator[list[ScriptedNode]]:
    started = [await ScriptedNode().start() for _ in range(2)]
    yield started
    for node in started:
        await node.stop()


class Tokens:
    """A token source that hands out x1/a1, x2/a2, ... and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> tuple[str, str]:
        self.calls += 1
        return f"x{self.calls}", f"a{self.calls}"


def client_of(
    nodes: list[ScriptedNode], tokens: Tokens, backoff: Backoff, **options: object
) -> Client:
    return connect(
        [node.url for node in nodes], tokens=tokens, backoff=backoff, shuffle=False,
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


async def next_delivery(sub: Subscription) -> Delivery:
    async with asyncio.timeout(STEP):
        return await anext(sub)


async def subscribed(conn: Conn, queue: str = "orders") -> None:
    assert await conn.recv() == f"/subscribe/{queue}"
    await conn.send(type="subscribed", queue=queue)


async def deliver(conn: Conn, msg_id: str, body: str = "m", queue: str = "orders") -> None:
    await conn.send(type="message", queue=queue, id=msg_id, rc=1, sent=1700000000000, message=body)


async def test_send_returns_the_id(nodes: list[ScriptedNode]) -> None:
    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        conn = await nodes[0].accept()
        assert conn.headers["x-token"] == "x1" and conn.headers["x-access-token"] == "a1"
        sending = asyncio.create_task(client.send("chat", "hi there"))
        assert await conn.recv() == "/send/chat hi there"
        await conn.send(type="sent", queue="chat", id=ID1)
        async with asyncio.timeout(STEP):
            assert await sending == ID1


@pytest.mark.parametrize("code", [1001, 1012])
async def test_going_away_moves_to_the_next_node_at_once_and_resubscribes(
    nodes: list[ScriptedNode], code: int
) -> None:
    events: list[Event] = []
    backoff = GatedBackoff()
    async with client_of(nodes, Tokens(), backoff, on_event=events.append) as client:
        sub = client.subscribe("orders")
        first = await nodes[0].accept()
        await subscribed(first)
        await first.close(code, "server shutting down")
        second = await nodes[1].accept()  # no backoff release needed: it is not used
        await subscribed(second)
        await deliver(second, ID1, "after")
        assert (await next_delivery(sub)).message == "after"
    assert backoff.delays == []
    a, b = nodes[0].url, nodes[1].url
    assert events == [
        Connecting(a),
        Connected(a),
        Subscribed(a, "orders", None),
        Disconnected(a, code, "server shutting down"),
        Connecting(b),
        Connected(b),
        Subscribed(b, "orders", None),  # before the delivery that follows it
    ]


@pytest.mark.parametrize("code", [4401, 4403])
async def test_auth_closes_call_tokens_again(nodes: list[ScriptedNode], code: int) -> None:
    tokens = Tokens()
    async with client_of(nodes, tokens, GatedBackoff()) as client:
        client.subscribe("orders")
        first = await nodes[0].accept()
        await subscribed(first)
        await first.close(code, "token expired")
        second = await nodes[1].accept()
        assert second.headers["x-token"] == "x2" and second.headers["x-access-token"] == "a2"
        assert tokens.calls == 2


async def test_auth_close_again_with_fresh_tokens_raises(nodes: list[ScriptedNode]) -> None:
    tokens = Tokens()
    async with client_of(nodes, tokens, GatedBackoff()) as client:
        sub = client.subscribe("orders")
        await (await nodes[0].accept()).close(4403, "access revoked")
        await (await nodes[1].accept()).close(4403, "access revoked")
        with pytest.raises(AuthenticationFailed):
            await next_delivery(sub)
    assert tokens.calls == 2
    assert nodes[0].accepted.empty() and nodes[1].accepted.empty()


async def test_http_401_at_the_handshake_raises(nodes: list[ScriptedNode]) -> None:
    nodes[0].reject_status = 401
    tokens = Tokens()
    with pytest.raises(AuthenticationFailed):
        async with asyncio.timeout(STEP), client_of(nodes, tokens, GatedBackoff()):
            pytest.fail("connected")
    assert tokens.calls == 1 and nodes[0].handshakes == 1 and nodes[1].handshakes == 0


async def test_rate_limit_close_backs_off(nodes: list[ScriptedNode]) -> None:
    backoff = GatedBackoff()
    async with client_of(nodes, Tokens(), backoff) as client:
        client.subscribe("orders")
        first = await nodes[0].accept()
        await subscribed(first)
        await first.close(4429, "rate limit exceeded")
        async with asyncio.timeout(STEP):
            await backoff.sleeping.wait()
        assert nodes[1].accepted.empty() and not client.connected  # held by the backoff
        backoff.release()
        await subscribed(await nodes[1].accept())
    assert len(backoff.delays) == 1


@pytest.mark.parametrize("code", [1008, 1009])
async def test_client_fault_closes_raise_without_retrying(
    nodes: list[ScriptedNode], code: int
) -> None:
    backoff = GatedBackoff()
    async with client_of(nodes, Tokens(), backoff) as client:
        sub = client.subscribe("orders")
        await (await nodes[0].accept()).close(code, "frame too large")
        with pytest.raises(ConnectionClosed) as raised:
            await next_delivery(sub)
        assert raised.value.close_code == code
        with pytest.raises(ConnectionClosed):
            await client.send("chat", "x")
    assert nodes[0].handshakes == 1 and nodes[1].handshakes == 0 and backoff.delays == []


async def test_unreachable_nodes_back_off_within_bounds() -> None:
    node = await ScriptedNode().start()
    url = node.url
    await node.stop()  # nothing listens there now: every attempt is refused
    events: list[Event] = []
    backoff = Backoff(base=0.01, cap=0.04)
    delays: list[float] = []
    original = backoff.next

    def record() -> float:
        delays.append(original())
        return delays[-1]

    backoff.next = record  # type: ignore[method-assign]
    client = connect([url], tokens=Tokens(), backoff=backoff, on_event=events.append)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0), client:
            pass
    assert len(delays) >= 5
    ceilings = [min(0.04, 0.01 * 2**n) for n in range(len(delays))]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert all(isinstance(e, Connecting | Disconnected) for e in events)


async def test_refresh_on_expiring(nodes: list[ScriptedNode]) -> None:
    tokens = Tokens()
    async with client_of(nodes[:1], tokens, GatedBackoff()):
        conn = await nodes[0].accept()
        await conn.send(type="expiring", seconds=30)
        assert await conn.recv() == "/refresh x2"
        await conn.send(type="refreshed", exp=1900000000)
    assert tokens.calls == 2


async def test_acks_of_one_loop_turn_share_one_frame(nodes: list[ScriptedNode]) -> None:
    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        sub = client.subscribe("orders")
        conn = await nodes[0].accept()
        await subscribed(conn)
        for msg_id in (ID1, ID2, ID3):
            await deliver(conn, msg_id)
        batch = [await next_delivery(sub) for _ in range(3)]
        acking = asyncio.gather(*(d.ack(confirm=True) for d in batch))
        assert await conn.recv() == f"/ack/orders/{ID1},{ID2},{ID3}"
        for msg_id in (ID1, ID2):
            await conn.send(type="acked", queue="orders", id=msg_id)
        await conn.send(type="error", code="unknown_message", detail="x", queue="orders", id=ID3)
        async with asyncio.timeout(STEP):
            assert await acking == [True, True, False]
        assert conn.received.empty()


async def held(client: Client, conn: Conn, *ids: str) -> list[Delivery]:
    """Subscribe ``orders`` on ``conn`` and deliver ``ids``: the application holds them."""
    sub = client.subscribe("orders")
    await subscribed(conn)
    return await more(conn, sub, *ids)


async def more(conn: Conn, sub: Subscription, *ids: str) -> list[Delivery]:
    """Deliver ``ids`` of ``sub``'s queue on ``conn``; the deliveries the application gets."""
    for msg_id in ids:
        await deliver(conn, msg_id, queue=sub.queue)
    return [await next_delivery(sub) for _ in ids]


async def test_nack_and_extend_frames(nodes: list[ScriptedNode]) -> None:
    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        conn = await nodes[0].accept()
        (d,) = await held(client, conn, ID1)
        assert await d.nack() is True  # queued, not confirmed
        assert await conn.recv() == f"/nack/orders/{ID1}"
        assert await d.nack(delay=5.0) is True
        assert await conn.recv() == f"/nack/orders/{ID1} 5"
        assert await d.extend(60) is True
        assert await conn.recv() == f"/extend/orders/{ID1} 60"
        # Unconfirmed: their replies only settle the client's books.
        await conn.send(type="nacked", queue="orders", id=ID1)
        await conn.send(type="nacked", queue="orders", id=ID1)
        await conn.send(type="extended", queue="orders", id=ID1)
        confirming = asyncio.create_task(d.extend(30, confirm=True))
        assert await conn.recv() == f"/extend/orders/{ID1} 30"
        await conn.send(type="extended", queue="orders", id=ID1)
        async with asyncio.timeout(STEP):
            assert await confirming is True


async def test_nacks_and_extends_of_one_turn_share_frames_and_confirm_per_id(
    nodes: list[ScriptedNode],
) -> None:
    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        conn = await nodes[0].accept()
        sub = client.subscribe("orders")
        await subscribed(conn)
        d1, d2, d3 = await more(conn, sub, ID1, ID2, ID3)
        settling = asyncio.gather(
            d1.nack(delay=5, confirm=True),
            d2.nack(delay=5, confirm=True),
            d3.extend(30, confirm=True),
            d1.extend(30, confirm=True),  # after its nack: the server answers unknown_message
        )
        # One frame per (verb, queue, argument), in the order they were first used.
        assert await conn.recv() == f"/nack/orders/{ID1},{ID2} 5"
        assert await conn.recv() == f"/extend/orders/{ID3},{ID1} 30"
        await conn.send(type="nacked", queue="orders", id=ID1)
        await conn.send(type="error", code="unknown_message", detail="x", queue="orders", id=ID2)
        await conn.send(type="extended", queue="orders", id=ID3)
        await conn.send(type="error", code="unknown_message", detail="x", queue="orders", id=ID1)
        async with asyncio.timeout(STEP):
            assert list(await settling) == [True, False, True, False]
        # Different delays are different frames.
        d4, d5 = await more(conn, sub, ID1, ID2)
        await asyncio.gather(d4.nack(delay=1), d5.nack(delay=2))
        assert {await conn.recv(), await conn.recv()} == {
            f"/nack/orders/{ID1} 1",
            f"/nack/orders/{ID2} 2",
        }


async def test_a_confirmed_nack_whose_connection_closes_is_false(
    nodes: list[ScriptedNode],
) -> None:
    async with client_of(nodes, Tokens(), GatedBackoff()) as client:
        first = await nodes[0].accept()
        (d,) = await held(client, first, ID1)
        nacking = asyncio.create_task(d.nack(confirm=True))
        extending = asyncio.create_task(d.extend(10, confirm=True))
        assert await first.recv() == f"/nack/orders/{ID1}"
        assert await first.recv() == f"/extend/orders/{ID1} 10"
        await first.close(1001, "server shutting down")
        async with asyncio.timeout(STEP):
            assert await nacking is False and await extending is False
        await subscribed(await nodes[1].accept())
        # A delivery of the closed connection is not settled on the new one.
        assert await d.extend(10, confirm=True) is False


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        ("nack", -1),
        ("nack", 1.5),
        ("nack", 10_000_000),
        ("nack", True),
        ("extend", 0),
        ("extend", 43_201),
        ("extend", "5"),
    ],
)
async def test_out_of_range_delays_raise_client_error(
    nodes: list[ScriptedNode], call: str, bad: object
) -> None:
    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        conn = await nodes[0].accept()
        (d,) = await held(client, conn, ID1)
        with pytest.raises(ClientError, match="seconds"):
            await getattr(d, call)(bad)
        await d.ack()
        assert await conn.recv() == f"/ack/orders/{ID1}"  # nothing else was sent


async def test_dedupe_drops_redeliveries_and_acks_the_acked_ones(
    nodes: list[ScriptedNode],
) -> None:
    async with client_of(nodes, Tokens(), GatedBackoff(), dedupe=10) as client:
        sub = client.subscribe("orders")
        first = await nodes[0].accept()
        await subscribed(first)
        await deliver(first, ID1)
        await deliver(first, ID2)
        d1, d2 = await next_delivery(sub), await next_delivery(sub)
        await d1.ack()
        assert await first.recv() == f"/ack/orders/{ID1}"
        await first.close(1001, "server shutting down")  # the ack's fate is unknown
        second = await nodes[1].accept()
        await subscribed(second)
        for msg_id in (ID1, ID2, ID3):
            await deliver(second, msg_id)
        assert (await next_delivery(sub)).id == ID3  # ID1 and ID2 were seen already
        assert await second.recv() == f"/ack/orders/{ID1}"  # acked before: acked again here
        assert await d2.ack() is True  # its redelivery is in flight on this connection
        assert await second.recv() == f"/ack/orders/{ID2}"
        assert second.received.empty()


async def test_an_ack_from_a_closed_connection_is_not_sent(nodes: list[ScriptedNode]) -> None:
    async with client_of(nodes, Tokens(), GatedBackoff()) as client:
        sub = client.subscribe("orders")
        first = await nodes[0].accept()
        await subscribed(first)
        await deliver(first, ID1)
        old = await next_delivery(sub)
        await first.close(1012, "server restarting")
        second = await nodes[1].accept()
        await subscribed(second)
        assert await old.ack() is False  # the server would answer unknown_message
        await deliver(second, ID1)  # its redelivery goes to the application again
        again = await next_delivery(sub)
        assert again.id == ID1 and await again.ack() is True
        assert await second.recv() == f"/ack/orders/{ID1}"
        assert second.received.empty()


async def test_legacy_mode_is_read_only() -> None:
    node = await ScriptedNode(legacy=True).start()
    try:
        async with connect([node.url], tokens=Tokens(), legacy=True) as client:
            sub = client.subscribe("orders")
            conn = await node.accept()
            assert await conn.recv() == "/subscribe/orders"
            await conn.send(message="hello")
            d = await next_delivery(sub)
            assert (d.queue, d.message) == ("orders", "hello")
            assert await d.ack() is True
            with pytest.raises(ClientError):
                await client.send("orders", "x")
            with pytest.raises(ClientError):
                await d.nack()
            with pytest.raises(ClientError):
                client.subscribe("other")
    finally:
        await node.stop()


async def test_v1_client_refuses_a_server_without_the_subprotocol() -> None:
    node = await ScriptedNode(legacy=True).start()
    try:
        with pytest.raises(ClientError):
            async with asyncio.timeout(STEP), connect([node.url], tokens=Tokens()):
                pass
    finally:
        await node.stop()


async def test_subscribe_error_ends_that_subscription(nodes: list[ScriptedNode]) -> None:
    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        sub = client.subscribe("secret")
        conn = await nodes[0].accept()
        assert await conn.recv() == "/subscribe/secret"
        await conn.send(type="error", code="forbidden", detail="no", queue="secret")
        with pytest.raises(ClientError, match="forbidden"):
            await next_delivery(sub)


async def test_a_send_whose_connection_closes_raises(nodes: list[ScriptedNode]) -> None:
    async with client_of(nodes, Tokens(), GatedBackoff()) as client:
        first = await nodes[0].accept()
        sending = asyncio.create_task(client.send("chat", "hi"))
        assert await first.recv() == "/send/chat hi"
        await first.close(1001, "server shutting down")
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(STEP):
                await sending
        await nodes[1].accept()  # and the client carries on


async def test_a_refused_reconnect_gets_fresh_tokens_once_then_raises(
    nodes: list[ScriptedNode],
) -> None:
    tokens = Tokens()
    async with client_of(nodes, tokens, GatedBackoff()) as client:
        sub = client.subscribe("orders")
        nodes[1].reject_status = 401
        await (await nodes[0].accept()).close(1001, "server shutting down")
        with pytest.raises(AuthenticationFailed):
            await next_delivery(sub)
    assert tokens.calls == 2 and nodes[1].handshakes == 2


async def test_unsubscribe_ends_the_iteration_and_is_not_renewed(
    nodes: list[ScriptedNode],
) -> None:
    async with client_of(nodes, Tokens(), GatedBackoff()) as client:
        orders, chat = client.subscribe("orders"), client.subscribe("chat")
        first = await nodes[0].accept()
        await subscribed(first, "orders")
        await subscribed(first, "chat")
        await client.unsubscribe("orders")
        assert await first.recv() == "/unsubscribe/orders"
        with pytest.raises(StopAsyncIteration):
            await next_delivery(orders)
        await deliver(first, ID1, queue="orders")  # already on its way: dropped
        await deliver(first, ID2, queue="chat")
        assert (await next_delivery(chat)).id == ID2
        await first.close(1001, "server shutting down")
        second = await nodes[1].accept()
        assert await second.recv() == "/subscribe/chat"
        assert second.received.empty()


async def drain_events(stream: EventStream) -> list[Event]:
    """Every event left in ``stream``, up to its end (which must come within STEP)."""
    async with asyncio.timeout(STEP):
        return [event async for event in stream]


async def test_events_stream_yields_the_connection_events_and_ends_on_close(
    nodes: list[ScriptedNode],
) -> None:
    client = client_of(nodes, Tokens(), GatedBackoff())
    stream = client.events()  # before `async with`: the first connection's events too
    watch = client.events()
    async with client:
        client.subscribe("orders")
        first = await nodes[0].accept()
        await subscribed(first)
        await first.send(type="expiring", seconds=30)
        assert await first.recv() == "/refresh x2"
        await first.send(type="refreshed", exp=1900000000)
        await first.close(1012, "server restarting")
        await subscribed(await nodes[1].accept())  # sent after Connected(b)
        async with asyncio.timeout(STEP):
            async for event in watch:
                if event == Subscribed(nodes[1].url, "orders", None):
                    break
    a, b = nodes[0].url, nodes[1].url
    assert await drain_events(stream) == [
        Connecting(a),
        Connected(a),
        Subscribed(a, "orders", None),
        TokenRefreshed(a, 1900000000),
        Disconnected(a, 1012, "server restarting"),
        Connecting(b),
        Connected(b),
        Subscribed(b, "orders", None),
    ]
    assert stream.dropped == 0
    assert await drain_events(client.events()) == []  # a closed client's stream is over


async def test_a_slow_events_reader_loses_the_oldest_and_never_blocks_the_client(
    nodes: list[ScriptedNode],
) -> None:
    client = client_of(nodes, Tokens(), GatedBackoff())
    stream = client.events(maxsize=2)
    async with client:
        sub = client.subscribe("orders")
        first = await nodes[0].accept()  # nobody reads the stream meanwhile
        await subscribed(first)
        await first.close(1001, "server shutting down")
        second = await nodes[1].accept()
        await subscribed(second)
        await deliver(second, ID1)
        assert (await next_delivery(sub)).id == ID1  # the client went on regardless
        b = nodes[1].url
        async with asyncio.timeout(STEP):
            assert [await anext(stream), await anext(stream)] == [
                Connected(b),
                Subscribed(b, "orders", None),
            ]
    # Connecting(a), Connected(a), Subscribed(a, ...), Disconnected(a, ...), Connecting(b)
    assert stream.dropped == 5


async def test_the_events_stream_ends_when_the_client_fails(nodes: list[ScriptedNode]) -> None:
    client = client_of(nodes, Tokens(), GatedBackoff())
    stream = client.events()
    async with client:
        await (await nodes[0].accept()).close(1008, "policy")
        events = await drain_events(stream)
    assert events[-1] == Disconnected(nodes[0].url, 1008, "policy")


def test_events_buffer_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        EventStream(0)


async def test_a_pool_of_workers_shares_one_subscription(nodes: list[ScriptedNode]) -> None:
    handled: list[tuple[int, str]] = []
    three = asyncio.Event()

    async def worker(sub: Subscription, number: int) -> None:
        async for d in sub:
            handled.append((number, d.id))
            await d.ack()
            if len(handled) == 3:
                three.set()

    async with client_of(nodes[:1], Tokens(), GatedBackoff()) as client:
        sub = client.subscribe("orders")
        conn = await nodes[0].accept()
        await subscribed(conn)
        workers = [asyncio.create_task(worker(sub, n)) for n in range(4)]
        await asyncio.sleep(0)  # let them all wait (no delivery yet: nothing to race)
        workers[0].cancel()  # a cancelled worker's wait is not left holding a delivery
        for msg_id in (ID1, ID2, ID3):
            await deliver(conn, msg_id)
        async with asyncio.timeout(STEP):
            await three.wait()
    async with asyncio.timeout(STEP):  # closing ends every worker's iteration
        await asyncio.gather(*workers[1:])
    assert sorted(msg_id for _, msg_id in handled) == [ID1, ID2, ID3]  # each to one worker
    assert all(number != 0 for number, _ in handled)

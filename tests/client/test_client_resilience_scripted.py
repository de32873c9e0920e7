"""The Python client against scripted nodes: transient subscribe refusals, ``Subscribed`` and
``sub.ready()``, a failing ``tokens()``, spaced renewals, ``leave``, ``ClientClosed``."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from tests.client.scripted import STEP, Conn, GatedBackoff, ScriptedNode
from wsmq.client import (
    AuthenticationFailed,
    ClientClosed,
    CommandFailed,
    ConnectionClosed,
    Event,
    Subscribed,
    TokenRefreshed,
    TransientError,
    Unauthorized,
    connect,
)
from wsmq.client.refresh import MIN_REFRESH_INTERVAL

ID1 = "a" * 32


@pytest.fixture
async def nodes() -> AsyncIterator[list[ScriptedNode]]:
    started = [await ScriptedNode().start() for _ in range(2)]
    yield started
    for node in started:
        await node.stop()


class Tokens:
    """x1/a1, x2/a2, ...; an exception queued in ``failures`` is raised instead, in order."""

    def __init__(self, *failures: Exception) -> None:
        self.calls = 0
        self.failures = list(failures)
        self.gate: asyncio.Event | None = None  # set: each call waits for it

    async def __call__(self) -> tuple[str, str]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        return f"x{self.calls}", f"a{self.calls}"


async def until(events: list[Event], wanted: Event) -> None:
    """Wait (bounded) until ``wanted`` was emitted."""
    async with asyncio.timeout(STEP):
        while wanted not in events:
            await asyncio.sleep(0.01)


async def recv_within(conn: Conn, seconds: float) -> str | None:
    """The next client frame within ``seconds``, else ``None``."""
    try:
        async with asyncio.timeout(seconds):
            return await conn.received.get()
    except TimeoutError:
        return None


# --- 1. transient subscribe refusals ---------------------------------------------------------


async def test_unavailable_is_retried_on_the_same_connection_then_ready(
    nodes: list[ScriptedNode],
) -> None:
    events: list[Event] = []
    client = connect(
        [nodes[0].url], tokens=Tokens(), backoff=GatedBackoff(), on_event=events.append
    )
    async with client:
        sub = client.subscribe("orders")
        conn = await nodes[0].accept()
        for _ in range(2):  # refused twice while "Redis is down"
            assert await conn.recv() == "/subscribe/orders"
            await conn.send(type="error", code="unavailable", detail="redis", queue="orders")
        assert await conn.recv() == "/subscribe/orders"
        assert not sub.subscribed
        await conn.send(type="subscribed", queue="orders")
        async with asyncio.timeout(STEP):
            await sub.ready()
        assert sub.subscribed
        await conn.send(type="message", queue="orders", id=ID1, rc=1, sent=1.0, message="m")
        async with asyncio.timeout(STEP):
            assert (await anext(sub)).id == ID1
    node = nodes[0].url
    refusals = [e for e in events if isinstance(e, TransientError)]
    assert len(refusals) == 2 and all(e.node == node for e in refusals)
    assert all(isinstance(e.error, CommandFailed) for e in refusals)
    assert [e.error.error_code for e in refusals if isinstance(e.error, CommandFailed)] == [
        "unavailable", "unavailable"]  # fmt: skip
    assert [e for e in events if isinstance(e, Subscribed)] == [Subscribed(node, "orders", None)]
    assert nodes[0].handshakes == 1  # all on the one connection


async def test_a_subscription_still_retrying_is_renewed_after_a_reconnect(
    nodes: list[ScriptedNode],
) -> None:
    events: list[Event] = []
    client = connect(
        [n.url for n in nodes], tokens=Tokens(), backoff=GatedBackoff(), shuffle=False,
        on_event=events.append,
    )  # fmt: skip
    async with client:
        sub = client.subscribe("orders")
        first = await nodes[0].accept()
        assert await first.recv() == "/subscribe/orders"
        await first.send(type="error", code="unavailable", detail="stopping", queue="orders")
        await first.close(1001, "server shutting down")
        second = await nodes[1].accept()
        assert await second.recv() == "/subscribe/orders"
        await second.send(type="subscribed", queue="orders")
        async with asyncio.timeout(STEP):
            await sub.ready()
        await until(events, Subscribed(nodes[1].url, "orders", None))
        # The retry timer of the first connection sends nothing on the second one.
        assert await recv_within(second, 0.3) is None


@pytest.mark.parametrize("code", ["forbidden", "invalid_queue", "too_many_subscriptions"])
async def test_a_permanent_refusal_ends_the_subscription(
    nodes: list[ScriptedNode], code: str
) -> None:
    async with connect([nodes[0].url], tokens=Tokens(), backoff=GatedBackoff()) as client:
        sub = client.subscribe("orders")
        conn = await nodes[0].accept()
        assert await conn.recv() == "/subscribe/orders"
        await conn.send(type="error", code=code, detail="no", queue="orders")
        with pytest.raises(CommandFailed) as failed:
            async with asyncio.timeout(STEP):
                await sub.ready()
        assert failed.value.error_code == code
        with pytest.raises(CommandFailed):
            await anext(sub)
        client.subscribe("orders")  # it is gone: the queue can be subscribed again
        assert await conn.recv() == "/subscribe/orders"


async def test_ready_returns_when_the_client_closes_first(nodes: list[ScriptedNode]) -> None:
    async with connect([nodes[0].url], tokens=Tokens(), backoff=GatedBackoff()) as client:
        sub = client.subscribe("orders")
        await nodes[0].accept()
    async with asyncio.timeout(STEP):
        await sub.ready()
    assert not sub.subscribed


# --- 2. Subscribed, devices, leave -----------------------------------------------------------


async def test_device_subscription_and_its_subscribed_event(nodes: list[ScriptedNode]) -> None:
    events: list[Event] = []
    client = connect(
        [nodes[0].url], tokens=Tokens(), backoff=GatedBackoff(), on_event=events.append
    )
    async with client:
        sub = client.subscribe("u1", device="phone-7f3a")
        conn = await nodes[0].accept()
        assert await conn.recv() == "/subscribe/u1 device=phone-7f3a"
        await conn.send(type="subscribed", queue="u1", device="phone-7f3a")
        async with asyncio.timeout(STEP):
            await sub.ready()
        await until(events, Subscribed(nodes[0].url, "u1", "phone-7f3a"))


async def test_leave_answers_removed_and_ends_that_devices_subscription(
    nodes: list[ScriptedNode],
) -> None:
    async with connect([nodes[0].url], tokens=Tokens(), backoff=GatedBackoff()) as client:
        sub = client.subscribe("u1", device="laptop")
        other = client.subscribe("u2", device="laptop")
        conn = await nodes[0].accept()
        for queue in ("u1", "u2"):
            assert await conn.recv() == f"/subscribe/{queue} device=laptop"
            await conn.send(type="subscribed", queue=queue, device="laptop")
        leaving = asyncio.create_task(client.leave("u1", "laptop"))
        assert await conn.recv() == "/leave/u1 device=laptop"
        await conn.send(type="left", queue="u1", device="laptop", removed=True)
        async with asyncio.timeout(STEP):
            assert await leaving is True
            with pytest.raises(StopAsyncIteration):  # its subscription ended, no error
                await anext(sub)
        gone = asyncio.create_task(client.leave("u2", "old-phone"))  # another device's inbox
        assert await conn.recv() == "/leave/u2 device=old-phone"
        await conn.send(type="left", queue="u2", device="old-phone", removed=False)
        async with asyncio.timeout(STEP):
            assert await gone is False
        busy = asyncio.create_task(client.leave("u2", "tablet"))
        assert await conn.recv() == "/leave/u2 device=tablet"
        await conn.send(type="error", code="device_in_use", detail="subscribed", queue="u2")
        with pytest.raises(CommandFailed, match="device_in_use"):
            async with asyncio.timeout(STEP):
                await busy
        await conn.close(1012, "server restarting")
        again = await nodes[0].accept()  # only u2 is renewed: u1's device left
        assert await again.recv() == "/subscribe/u2 device=laptop"
        assert await recv_within(again, 0.3) is None
        assert other.device == "laptop"


async def test_leave_rejects_bad_names_and_legacy(nodes: list[ScriptedNode]) -> None:
    from wsmq.client import ClientError

    async with connect([nodes[0].url], tokens=Tokens(), backoff=GatedBackoff()) as client:
        with pytest.raises(ClientError, match="device"):
            await client.leave("u1", "a:b")
        with pytest.raises(ClientError, match="queue"):
            await client.leave("no such", "phone")


# --- 3. tokens() failing ---------------------------------------------------------------------


async def test_a_failing_tokens_call_at_connect_is_retried_with_backoff(
    nodes: list[ScriptedNode],
) -> None:
    events: list[Event] = []
    backoff = GatedBackoff()
    tokens = Tokens(OSError("token endpoint unreachable"), TimeoutError())
    client = connect([nodes[0].url], tokens=tokens, backoff=backoff, on_event=events.append)
    connecting = asyncio.create_task(client.__aenter__())
    for failed in (1, 2):
        async with asyncio.timeout(STEP):
            while len(backoff.delays) < failed:  # the client sleeps after each failure
                await asyncio.sleep(0.01)
        backoff.release()
    async with asyncio.timeout(STEP):
        await connecting
    try:
        conn = await nodes[0].accept()
        assert conn.headers["x-token"] == "x3"
        errors = [e.error for e in events if isinstance(e, TransientError)]
        assert [type(e) for e in errors] == [OSError, TimeoutError]
        assert len(backoff.delays) == 2
    finally:
        await client.close()


async def test_unauthorized_from_tokens_ends_the_client(nodes: list[ScriptedNode]) -> None:
    client = connect(
        [nodes[0].url], tokens=Tokens(Unauthorized("logged out")), backoff=GatedBackoff()
    )
    with pytest.raises(AuthenticationFailed) as failed:
        async with asyncio.timeout(STEP), client:
            pass
    assert isinstance(failed.value.__cause__, Unauthorized)
    assert nodes[0].handshakes == 0


async def test_a_failing_tokens_call_on_expiring_is_retried_not_fatal(
    nodes: list[ScriptedNode],
) -> None:
    events: list[Event] = []
    tokens = Tokens()
    client = connect([nodes[0].url], tokens=tokens, backoff=GatedBackoff(), on_event=events.append)
    async with client:
        conn = await nodes[0].accept()
        tokens.failures = [OSError("blip")]
        await conn.send(type="expiring", seconds=30)
        # Retried with the client's own (real, short) backoff: the second call answers.
        assert await conn.recv() == "/refresh x3"
        await conn.send(type="refreshed", exp=1900000000)
        await until(events, TokenRefreshed(nodes[0].url, 1900000000))
        assert client.connected
    assert [type(e.error) for e in events if isinstance(e, TransientError)] == [OSError]


async def test_unauthorized_on_expiring_ends_the_client(nodes: list[ScriptedNode]) -> None:
    tokens = Tokens()
    async with connect([nodes[0].url], tokens=tokens, backoff=GatedBackoff()) as client:
        sub = client.subscribe("orders")
        conn = await nodes[0].accept()
        assert await conn.recv() == "/subscribe/orders"
        tokens.failures = [Unauthorized("session revoked")]
        await conn.send(type="expiring", seconds=30)
        with pytest.raises(AuthenticationFailed):
            async with asyncio.timeout(STEP):
                await anext(sub)
        with pytest.raises(AuthenticationFailed):
            await client.send("orders", "x")
    assert nodes[0].handshakes == 1  # not retried


# --- 4. spaced renewals ----------------------------------------------------------------------


async def test_a_server_warning_after_every_refresh_does_not_make_the_client_loop(
    nodes: list[ScriptedNode],
) -> None:
    window = 2.5
    tokens = Tokens()
    async with connect([nodes[0].url], tokens=tokens, backoff=GatedBackoff()):
        conn = await nodes[0].accept()
        await conn.send(type="expiring", seconds=1)
        refreshes: list[float] = []
        deadline = time.monotonic() + window
        while (left := deadline - time.monotonic()) > 0:
            frame = await recv_within(conn, left)
            if frame is None:
                break
            assert frame.startswith("/refresh ")
            refreshes.append(time.monotonic())
            # The buggy server: the new token is "expiring" at once too.
            await conn.send(type="refreshed", exp=1900000000)
            await conn.send(type="expiring", seconds=1)
    # At most one per MIN_REFRESH_INTERVAL (a loop would make hundreds), and it keeps going.
    assert 2 <= len(refreshes) <= window / MIN_REFRESH_INTERVAL + 1, refreshes
    gaps = [b - a for a, b in itertools.pairwise(refreshes)]
    assert all(gap >= MIN_REFRESH_INTERVAL - 0.05 for gap in gaps), gaps


async def test_one_renewal_in_flight_covers_every_warning_meanwhile(
    nodes: list[ScriptedNode],
) -> None:
    tokens = Tokens()
    async with connect([nodes[0].url], tokens=tokens, backoff=GatedBackoff()):
        conn = await nodes[0].accept()
        tokens.gate = asyncio.Event()  # tokens() hangs until released
        for _ in range(3):
            await conn.send(type="expiring", seconds=30)
        async with asyncio.timeout(STEP):
            while tokens.calls < 2:
                await asyncio.sleep(0.01)
        tokens.gate.set()
        assert await conn.recv() == "/refresh x2"
        assert await recv_within(conn, 0.3) is None
        assert tokens.calls == 2


# --- ClientClosed ----------------------------------------------------------------------------


async def test_commands_cut_short_by_close_raise_client_closed(nodes: list[ScriptedNode]) -> None:
    client = connect([nodes[0].url], tokens=Tokens(), backoff=GatedBackoff())
    async with client:
        conn = await nodes[0].accept()
        sending = asyncio.create_task(client.send("chat", "hi"))
        assert await conn.recv() == "/send/chat hi"
        await client.close()
        with pytest.raises(ClientClosed):
            async with asyncio.timeout(STEP):
                await sending
    with pytest.raises(ClientClosed):
        await client.send("chat", "again")
    with pytest.raises(ClientClosed):
        client.subscribe("chat")


async def test_a_lost_connection_is_not_client_closed(nodes: list[ScriptedNode]) -> None:
    async with connect([nodes[0].url], tokens=Tokens(), backoff=GatedBackoff()) as client:
        conn = await nodes[0].accept()
        sending = asyncio.create_task(client.send("chat", "hi"))
        assert await conn.recv() == "/send/chat hi"
        await conn.close(1012, "server restarting")
        with pytest.raises(ConnectionClosed) as lost:
            async with asyncio.timeout(STEP):
                await sending
        assert not isinstance(lost.value, ClientClosed)

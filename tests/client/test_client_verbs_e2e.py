"""nack, extend and the in-band token refresh through the client, against a real node and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.e2e.conftest import Cred, MakeUser, StartNode, token_for
from wsmq.client import (
    Client,
    Delivery,
    Disconnected,
    Event,
    Subscription,
    TokenRefreshed,
    connect,
)
from wsmq.gateway import Gateway
from wsmq.queue import Queues

pytestmark = pytest.mark.backends("single")  # the client is under test; the verbs' Redis side
# on every backend is tests/e2e/test_nack_extend_e2e.py's

STEP = 10.0  # the longest any single step may take


@asynccontextmanager
async def client_of(node: Gateway, user: Cred, **options: object) -> AsyncIterator[Client]:
    async def tokens() -> tuple[str, str]:
        return user.x_token, user.access_token

    assert node.url is not None
    async with connect([node.url], tokens=tokens, **options) as client:  # type: ignore[arg-type]
        yield client


async def next_of(*subs: Subscription, timeout: float = STEP) -> Delivery:
    """The first delivery of any of ``subs``."""
    nexts = [asyncio.ensure_future(anext(sub)) for sub in subs]
    try:
        done, _ = await asyncio.wait(nexts, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError(f"no delivery within {timeout} s")
        return done.pop().result()
    finally:
        for step in nexts:
            step.cancel()


async def queue_empty(queues: Queues, qname: str, within: float = STEP) -> None:
    async with asyncio.timeout(within):
        while (await queues.get_queue_attributes(qname)).msgs:
            await asyncio.sleep(0.05)


async def test_a_nacked_message_comes_back_with_rc_plus_one_after_its_delay(
    start_node: StartNode, make_user: MakeUser, queues: Queues
) -> None:
    node, alice = await start_node(), await make_user()
    qname = alice.user_id
    await queues.create_queue(qname, vt=60)  # without the nack: hidden for a minute
    msg_id = await queues.send_message(qname, "retry me")
    async with client_of(node, alice) as client:
        sub = client.subscribe(qname)
        first = await next_of(sub)
        assert (first.id, first.rc) == (msg_id, 1)
        nacked_at = time.time()
        assert await first.nack(delay=1, confirm=True) is True
        again = await next_of(sub)
        assert time.time() - nacked_at >= 0.95  # not before its delay (clock granularity)
        assert (again.id, again.rc, again.message) == (msg_id, 2, "retry me")
        assert await again.ack(confirm=True) is True
    await queue_empty(queues, qname)


async def test_an_extended_message_is_not_redelivered_before_its_new_deadline(
    start_node: StartNode, make_user: MakeUser, queues: Queues
) -> None:
    node, alice = await start_node(), await make_user()
    qname = alice.user_id
    await queues.create_queue(qname, vt=2)
    msg_id = await queues.send_message(qname, "slow job")
    async with client_of(node, alice) as holder, client_of(node, alice) as other:
        held, watching = holder.subscribe(qname), other.subscribe(qname)
        d = await next_of(held, watching)
        extended_at = time.time()
        assert await d.extend(5, confirm=True) is True
        # Past the original vt (2 s) and a poll: nobody gets it before the new deadline...
        with pytest.raises(TimeoutError):
            await next_of(held, watching, timeout=4.5 - (time.time() - extended_at))
        # ... and then it comes back (to either socket), counted once more.
        again = await next_of(held, watching)
        assert time.time() - extended_at >= 4.95
        assert (again.id, again.rc) == (msg_id, 2)
        assert await again.ack(confirm=True) is True
    await queue_empty(queues, qname)


async def test_another_socket_cannot_nack_or_extend_a_held_message(
    start_node: StartNode, make_user: MakeUser, queues: Queues
) -> None:
    node, alice = await start_node(), await make_user()
    qname = alice.user_id
    await queues.create_queue(qname, vt=60)
    await queues.send_message(qname, "mine")
    async with client_of(node, alice) as holder, client_of(node, alice) as other:
        d = await next_of(holder.subscribe(qname))
        watching = other.subscribe(qname)
        # The same user on another socket, subscribed to the same queue, names the id: the
        # node refuses (unknown_message). Both clients are on their first connection, so the
        # copy carries a generation `other` accepts as its own.
        forged = dataclasses.replace(d, client=other)
        assert await forged.nack(confirm=True) is False
        assert await forged.extend(30, confirm=True) is False
        with pytest.raises(TimeoutError):  # the nack did not make it visible again
            await next_of(watching, timeout=1.0)
        assert await d.ack(confirm=True) is True  # still held by its socket
    await queue_empty(queues, qname)


async def test_short_lived_tokens_are_refreshed_in_band_under_a_steady_stream(
    start_node: StartNode, make_user: MakeUser, queues: Queues
) -> None:
    ttl, run, rate = 3, 10.0, 50  # a token lives 3 s; 10 s of 50 msg/s
    node = await start_node(expiry_warning=1.5)
    alice = await make_user(ttl=ttl)
    qname = alice.user_id
    await queues.create_queue(qname, vt=5)
    minted = 0

    async def tokens() -> tuple[str, str]:
        nonlocal minted
        minted += 1
        return token_for(alice.user_id, ttl=ttl), alice.access_token

    assert node.url is not None
    client = connect([node.url], tokens=tokens)
    stream = client.events()
    sent: set[str] = set()
    handled: list[str] = []

    async def publish() -> None:
        deadline = time.monotonic() + run
        while time.monotonic() < deadline:
            sent.add(await queues.send_message(qname, f"m{len(sent)}"))
            await asyncio.sleep(1 / rate)

    async def consume(sub: Subscription) -> None:
        async for d in sub:
            handled.append(d.id)
            await d.ack()

    async with client:
        consumer = asyncio.create_task(consume(client.subscribe(qname)))
        await publish()
        async with asyncio.timeout(STEP):
            while not sent <= set(handled):
                await asyncio.sleep(0.05)
        await queue_empty(queues, qname)
        consumer.cancel()
    events: list[Event] = [e async for e in stream]
    refreshes = [e for e in events if isinstance(e, TokenRefreshed)]
    # A refresh every ~1.5 s (3 s tokens, warned 1.5 s ahead) over the 10 s run.
    assert len(refreshes) >= run // ttl, events
    assert minted == len(refreshes) + 1  # the handshake's tokens, then one per refresh
    assert not [e for e in events if isinstance(e, Disconnected)], events  # no 4403, no reconnect
    assert len(sent) >= run * rate * 0.5 and sorted(handled) == sorted(sent)


async def test_tokens_shorter_than_the_servers_warning_are_renewed_at_half_life_not_in_a_loop(
    start_node: StartNode, make_user: MakeUser
) -> None:
    """The default 60 s ``expiry_warning`` and 3 s tokens (the server used to warn at once, and
    again right after every refresh): about one refresh per 1.5 s, the socket never drops."""
    ttl, run = 3, 5.0
    node = await start_node()
    alice = await make_user(ttl=ttl)
    refreshed = asyncio.Queue[TokenRefreshed]()
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        if isinstance(event, TokenRefreshed):
            refreshed.put_nowait(event)

    async def tokens() -> tuple[str, str]:
        return token_for(alice.user_id, ttl=ttl), alice.access_token

    assert node.url is not None
    async with connect([node.url], tokens=tokens, on_event=on_event):
        deadline = time.monotonic() + run
        count = 0
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    await refreshed.get()
            except TimeoutError:
                break
            count += 1
    # 5 s of 3 s tokens warned 1-1.5 s before exp: 3 to 5 refreshes; a loop would make hundreds.
    assert 2 <= count <= run + 1, events
    assert not [e for e in events if isinstance(e, Disconnected)], events

"""The Python client through a Redis outage on a real node: a subscribe answered
``unavailable`` is retried until Redis is back, then delivers (not ended for good)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.e2e.conftest import MakeUser, StartNode
from wsmq.backoff import Backoff
from wsmq.client import CommandFailed, Event, Subscribed, TransientError, connect
from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

pytestmark = pytest.mark.backends("single")  # the test kills and restarts its own redis-server

STEP = 15.0


async def test_a_subscribe_refused_while_redis_is_down_is_retried_until_it_is_back(
    redis_factory: Callable[..., RedisProcess], start_node: StartNode, make_user: MakeUser
) -> None:
    redis = redis_factory(appendonly=True)
    node = await start_node(redis_url=redis.url)
    alice = await make_user()
    queues = Queues.from_url(redis.url)
    try:
        await queues.create_queue(alice.user_id)
        await queues.send_message(alice.user_id, "waited out the outage")
        await asyncio.to_thread(redis.kill)
        events: list[Event] = []
        refused = asyncio.Event()

        def on_event(event: Event) -> None:
            events.append(event)
            if isinstance(event, TransientError):
                refused.set()

        async def tokens() -> tuple[str, str]:
            return alice.x_token, alice.access_token

        assert node.url is not None
        client = connect(
            [node.url], tokens=tokens, on_event=on_event, backoff=Backoff(base=0.1, cap=0.5)
        )
        async with client:
            sub = client.subscribe(alice.user_id)
            async with asyncio.timeout(STEP):
                await refused.wait()  # the node answered `unavailable`: Redis is down
            assert not sub.subscribed
            await asyncio.to_thread(redis.start)
            async with asyncio.timeout(STEP):
                await sub.ready()
                delivery = await anext(sub)
            assert delivery.message == "waited out the outage"
            assert await delivery.ack(confirm=True) is True
        errors = [e.error for e in events if isinstance(e, TransientError)]
        assert errors and all(
            isinstance(e, CommandFailed) and e.error_code == "unavailable" for e in errors
        )
        assert Subscribed(node.url, alice.user_id, None) in events
    finally:
        await queues.close()

"""Acks through a Redis outage: ``acked`` means deleted; outages and failed calls are counted
apart (``wsmq_redis_outages_total``, ``wsmq_redis_errors_total``).

Single only: each test starts and kills its own redis-server (the shared backend is unused);
failovers on Cluster and Sentinel are covered in tests/scaleout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from wsmq.gateway import Gateway
from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

from .conftest import MakeUser, StartNode, connect, recv_type, subscribe
from .test_slow_peers_e2e import metric

pytestmark = pytest.mark.backends("single")


@dataclass
class AckDuringOutage:
    """A node whose v1 client holds one message and acked it while Redis was down."""

    redis: RedisProcess
    node: Gateway
    queues: Queues
    ws: aiohttp.ClientWebSocketResponse
    qname: str
    msg_id: str


@pytest.fixture
async def ack_during_outage(
    redis_factory: Callable[..., RedisProcess],
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
) -> AsyncIterator[AckDuringOutage]:
    redis = redis_factory(appendonly=True)  # appendfsync always: the restart keeps everything
    node = await start_node(redis_url=redis.url, shutdown_timeout=1.0)
    alice = await make_user()
    queues = Queues.from_url(redis.url)
    try:
        await queues.create_queue(alice.user_id, vt=300)
        await queues.send_message(alice.user_id, "ack me through an outage")
        ws = await connect(http, node, alice)
        await subscribe(ws, alice.user_id)
        msg_id = (await recv_type(ws, "message"))["id"]
        assert metric(node, "wsmq_redis_outages_total") == 0
        await asyncio.to_thread(redis.kill)
        await ws.send_str(f"/ack/{alice.user_id}/{msg_id}")
        # The delete fails within a second (connection refused, a few retries); no `acked`
        # may follow while it has not been applied.
        with pytest.raises(TimeoutError):
            await recv_type(ws, "acked", timeout=2.0)
        yield AckDuringOutage(redis, node, queues, ws, alice.user_id, msg_id)
        await ws.close()
    finally:
        await queues.close()


async def test_acked_is_sent_only_once_the_delete_landed(
    ack_during_outage: AckDuringOutage,
) -> None:
    case = ack_during_outage
    assert metric(case.node, "wsmq_redis_outages_total") == 1
    assert metric(case.node, "wsmq_redis_errors_total") > 1  # the ack's delete, the retries
    await asyncio.to_thread(case.redis.start)
    frame = await recv_type(case.ws, "acked", timeout=15)
    assert frame == {"type": "acked", "queue": case.qname, "id": case.msg_id}
    attrs = await case.queues.get_queue_attributes(case.qname)
    assert (attrs.msgs, attrs.hiddenmsgs) == (0, 0)  # deleted before the reply was sent
    assert metric(case.node, "wsmq_redis_outages_total") == 1  # one episode


async def test_an_ack_pending_at_shutdown_is_never_answered_acked(
    ack_during_outage: AckDuringOutage,
) -> None:
    case = ack_during_outage
    closing = asyncio.create_task(case.node.close())
    # The socket closes with 1001; the ack is answered `unavailable` if the reply beats the
    # close, never `acked`.
    replies = []
    async with asyncio.timeout(10):
        while (msg := await case.ws.receive()).type is aiohttp.WSMsgType.TEXT:
            replies.append(json.loads(msg.data))
        await closing
    assert case.ws.close_code == 1001
    assert all(r["type"] == "error" and r["code"] == "unavailable" for r in replies), replies
    await asyncio.to_thread(case.redis.start)
    attrs = await case.queues.get_queue_attributes(case.qname)
    assert attrs.msgs == 1  # not deleted: it comes back after its vt (at-least-once)

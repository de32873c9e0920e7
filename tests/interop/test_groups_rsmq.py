"""An npm ``rsmq`` publisher fans out unchanged: it sends to the group's queue (an RSMQ queue),
with realtime on, and a running copier copies into every member (one server: the npm package
has no cluster layout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wsmq.engine.group_copier import GroupCopier
from wsmq.queue import Queues

from .test_rsmq_interop import NodeRsmq

pytestmark = pytest.mark.interop


@pytest.fixture
async def node(node_modules: Path, redis_url: str) -> AsyncIterator[NodeRsmq]:
    helper = await NodeRsmq.start(node_modules, redis_url)
    try:
        yield helper
    finally:
        await helper.close()


async def test_an_rsmq_publisher_sending_to_a_group_fans_out(
    node: NodeRsmq, redis_url: str
) -> None:
    async with Queues.from_url(redis_url) as queues:
        for q in ("a", "b"):
            await queues.create_queue(q)
        await queues.groups.add("news", "a", "b")
        # Only the realtime notification can wake the copier within the test's timeout.
        async with GroupCopier.from_url(redis_url, poll_interval=600) as copier:
            async with asyncio.timeout(10):
                while "news" not in copier.groups:
                    await asyncio.sleep(0.02)
            msg_id = await node.call("sendMessage", realtime=True, qname="news", message="hi")
            async with asyncio.timeout(10):
                while (await queues.visible_counts(["a", "b"])) != {"a": 1, "b": 1}:
                    await asyncio.sleep(0.02)
        # The copies are RSMQ messages an rsmq consumer reads, with the publisher's id.
        for q in ("a", "b"):
            got = await node.call("receiveMessage", qname=q)
            assert (got["id"], got["message"]) == (msg_id, "hi")

"""Chaos: a v1 peer black-holed in the middle of an ack burst, against a real ``wsmq serve``.

The peer (a raw socket, :mod:`tests.e2e.rawws`) subscribes to a queue whose messages outgrow
every socket buffer on the way, so the node's writes to it stall; it then sends a burst of
acks (each answered by an error frame) larger than the node's ack queue and goes silent
without closing: it neither reads nor sends again. The node must still drop it within the
heartbeat bound and release its messages at once. The same size in the default and the full
(``WSMQ_CHAOS=1``) run: one peer is the whole point.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.rawws import RawWebSocket

from .backends import StandaloneBackend
from .procs import make_users, node_group

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

HEARTBEAT = 2.0  # procs.NODE_ARGS


async def _metric(http: aiohttp.ClientSession, url: str, name: str) -> float:
    async with asyncio.timeout(5), http.get(url) as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_peer_blackholed_mid_ack_burst_is_dropped_and_released(tmp_path: Path) -> None:
    backend = StandaloneBackend()
    await asyncio.to_thread(backend.start)
    queues = backend.queues()
    try:
        users_file = tmp_path / "users.json"
        (cred,) = await make_users(users_file, 1)
        qname = cred.user_id
        await queues.create_queue(qname, vt=300)  # redelivery after vt would take 5 minutes
        for _ in range(4):  # 12 MB: more than the kernel's socket buffers take
            await queues.send_messages(qname, ["b" * 60_000] * 50)
        async with (
            node_group(backend.url, users_file, tmp_path, 1, "--window", "200") as group,
            aiohttp.ClientSession() as http,
        ):
            (node,) = group.nodes
            metrics = node.url.replace("ws://", "http://", 1).rstrip("/") + "/metrics"
            peer = await RawWebSocket.connect(node.url, cred.headers, protocol="wsmq.v1")
            await peer.send_text(f"/subscribe/{qname}")
            async with asyncio.timeout(10):  # the node took a batch for it: its writes stall
                while (await queues.get_queue_attributes(qname)).hiddenmsgs == 0:
                    await asyncio.sleep(0.02)
            ack = f"/ack/{qname}/" + "0" * 32
            for _ in range(3000):  # replies beyond aiohttp's writer limit, acks beyond the queue
                await peer.send_text(ack)
            burst_end = time.monotonic()

            async with asyncio.timeout(1.5 * HEARTBEAT + 3.0):
                while (await queues.get_queue_attributes(qname)).hiddenmsgs:
                    await asyncio.sleep(0.05)
            assert time.monotonic() - burst_end <= 1.5 * HEARTBEAT + 3.0
            assert await _metric(http, metrics, "wsmq_connections") == 0
            assert await _metric(http, metrics, 'wsmq_closes_total{code="1006"}') == 1
            peer.abort()
    finally:
        await queues.close()
        await asyncio.to_thread(backend.cleanup)

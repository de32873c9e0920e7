"""The original's clients, unchanged: a Node.js ``ws`` subscriber and an ``rsmq`` publisher."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.sentinel import Sentinel

from wsmq.connections import parse_redis_url
from wsmq.queue import Queues

from .conftest import MakeUser, StartNode, connect, recv_type, subscribe, wait_for

pytestmark = pytest.mark.interop

WS_CLIENT = r"""
const WebSocket = require('ws');
const [url, token, access, qname] = process.argv.slice(1);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
// Exactly the original README's client: tokens in headers, no subprotocol.
const ws = new WebSocket(url, {headers: {'x-token': token, 'x-access-token': access}});
ws.on('open', () => { ws.send('/subscribe/' + qname); out({event: 'open'}); });
ws.on('message', (data) => out({event: 'message', data: data.toString()}));
ws.on('unexpected-response', (req, res) => {
  out({event: 'rejected', status: res.statusCode}); process.exit(0);
});
ws.on('close', (code) => { out({event: 'close', code}); process.exit(0); });
ws.on('error', (e) => out({event: 'error', message: String(e)}));
process.stdin.on('data', () => ws.close());
"""

RSMQ_PUBLISHER = r"""
const RedisSMQ = require('rsmq');
const [host, port, qname, message, realtime] = process.argv.slice(1);
const rsmq = new RedisSMQ({host, port: Number(port), ns: 'rsmq', realtime: realtime === 'true'});
rsmq.sendMessage({qname, message}, (err, id) => {
  process.stdout.write(JSON.stringify({err: err ? String(err) : null, id}) + '\n');
  process.exit(0);
});
"""


async def _node(
    node_modules: Path, script: str, *args: str, stdin: bool = False
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "node", "-e", script, *args,
        stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        env={**os.environ, "NODE_PATH": str(node_modules)},
    )  # fmt: skip


async def _line(proc: asyncio.subprocess.Process, timeout: float = 10.0) -> dict[str, Any]:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        line = await proc.stdout.readline()
    assert line, "node exited without output"
    data: dict[str, Any] = json.loads(line)
    return data


async def test_original_node_ws_client_unchanged(
    node_modules: Path,
    start_node: StartNode,
    make_user: MakeUser,
    queues: Queues,
) -> None:
    node = await start_node()
    alice = await make_user()
    await queues.create_queue(alice.user_id)
    await queues.send_message(alice.user_id, "sent while offline")
    assert node.url is not None
    proc = await _node(
        node_modules, WS_CLIENT, node.url, alice.x_token, alice.access_token, alice.user_id,
        stdin=True,
    )  # fmt: skip
    try:
        assert (await _line(proc))["event"] == "open"
        first = await _line(proc)
        assert first == {"event": "message", "data": '{"message":"sent while offline"}'}
        await queues.send_message(alice.user_id, '{"json":true}')
        second = await _line(proc)
        assert json.loads(second["data"]) == {"message": '{"json":true}'}  # double-encoded

        async def emptied() -> bool:
            return (await queues.get_queue_attributes(alice.user_id)).msgs == 0

        # Legacy: deleted once written (the delete follows the write; it does not wait for it).
        await wait_for(emptied)
        assert proc.stdin is not None
        proc.stdin.write(b"bye\n")
        await proc.stdin.drain()
        assert (await _line(proc))["event"] == "close"
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    # The original crashed on a rejected token; wsmq answers 401 before the upgrade.
    bad = await _node(node_modules, WS_CLIENT, node.url, "bad", "bad", alice.user_id)
    try:
        assert await _line(bad) == {"event": "rejected", "status": 401}
    finally:
        if bad.returncode is None:
            bad.kill()
        await asyncio.wait_for(bad.wait(), 10)


async def _plain_server(redis_url: str) -> tuple[str, int]:
    """Where the npm ``rsmq`` client (one plain server, no Sentinel) must connect: the server
    itself, or the master the sentinels name."""
    target = parse_redis_url(redis_url)
    if target.kind != "sentinel":
        return target.hosts[0]
    assert target.service_name is not None
    sentinels = Sentinel(list(target.hosts), sentinel_kwargs={"socket_timeout": 5})  # type: ignore[no-untyped-call, unused-ignore]
    try:
        host, port = await sentinels.discover_master(target.service_name)
    finally:
        for sentinel in sentinels.sentinels:
            await sentinel.aclose()
    return str(host), int(port)


# Not on Cluster: the npm rsmq client talks to one plain server and writes the single-server
# key layout (rsmq:q:Q), not the cluster one (rsmq:{q}:Q).
@pytest.mark.backends("single", "sentinel")
@pytest.mark.parametrize("realtime", [True, False])
async def test_rsmq_publisher_reaches_connected_client(
    realtime: bool,
    node_modules: Path,
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    redis_url: str,
) -> None:
    node = await start_node(poll_interval=0.3)
    alice = await make_user()
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)  # creates the queue rsmq then writes to
    host, port = await _plain_server(redis_url)
    body = f"from rsmq realtime={realtime}"
    pub = await _node(
        node_modules, RSMQ_PUBLISHER, host, str(port), alice.user_id, body, str(realtime).lower()
    )
    try:
        result = await _line(pub)
        await asyncio.wait_for(pub.wait(), 10)
    finally:
        if pub.returncode is None:
            pub.kill()
            await asyncio.wait_for(pub.wait(), 10)
    assert result["err"] is None and len(result["id"]) == 32
    frame = await recv_type(ws, "message", timeout=5)
    assert (frame["id"], frame["message"]) == (result["id"], body)
    await ws.send_str(f"/ack/{alice.user_id}/{frame['id']}")
    assert (await recv_type(ws, "acked"))["id"] == result["id"]
    await ws.close()

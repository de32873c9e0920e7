"""GET /api/nodes: every live node announces itself; a closed or silent one leaves the list."""

from __future__ import annotations

import asyncio

import aiohttp

from wsmq import __version__
from wsmq.api.nodes import NodeAnnouncer, list_nodes
from wsmq.auth import FileUserStore
from wsmq.gateway import Gateway
from wsmq.queue import Queues
from wsmq.testing.users import make_users

from .conftest import SECRET, Api, StartNode


async def _nodes(api: Api) -> list[dict[str, object]]:
    status, body, _ = await api.call("GET", "/api/nodes", "reader")
    assert status == 200
    nodes: list[dict[str, object]] = body["nodes"]
    return nodes


async def test_two_nodes_listed_with_their_connections(
    api: Api,
    node: Gateway,
    start_node: StartNode,
    http: aiohttp.ClientSession,
    user_store: FileUserStore,
) -> None:
    other = await start_node()
    (user,) = await make_users(user_store, names=["bob"], queues=("q1",), secret=SECRET)
    assert other.url is not None
    ws = await http.ws_connect(other.url, headers=user.headers, protocols=("wsmq.v1",))
    await ws.send_str("/subscribe/q1")
    async with asyncio.timeout(5):
        while True:
            nodes = await _nodes(api)
            by_url = {n["url"]: n for n in nodes}
            if (
                len(nodes) == 2
                and by_url.get(other.url, {}).get("connections") == 1
                and by_url[other.url].get("subscriptions") == 1
            ):
                break
            await asyncio.sleep(0.1)
    assert set(by_url) == {node.url, other.url}
    first = by_url[node.url]
    assert first["connections"] == 0 and first["version"] == __version__
    assert isinstance(first["uptime"], float) and first["uptime"] >= 0
    assert first["id"] != by_url[other.url]["id"]
    await ws.close()
    await other.close()
    assert [n["url"] for n in await _nodes(api)] == [node.url]  # withdrawn on close


async def test_a_silent_node_expires(queues: Queues) -> None:
    announcer = NodeAnnouncer(
        queues.redis, "rsmq", lambda: {"connections": 0, "subscriptions": 0}, interval=0.1
    )
    await announcer.announce()  # announced once, then silent (a crashed node)
    assert [n["id"] for n in await list_nodes(queues.redis, "rsmq")] == [announcer.node_id]
    async with asyncio.timeout(5):
        while await list_nodes(queues.redis, "rsmq"):
            await asyncio.sleep(0.1)
    assert await queues.redis.smembers("rsmq:wsmq:nodes") == set()  # the stale id dropped

"""A connection's log records name its peer and its user (the one authenticated when the line
is written), in JSON logs, without its tokens."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import aiohttp
import pytest

from wsmq.logs import configure_logging

from .conftest import MakeUser, StartNode, connect, recv, recv_close, subscribe, wait_for

CONNECTION_EVENTS = {"handshake_reject", "ws_open", "ws_error", "ws_close"}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


async def test_connection_records_carry_peer_and_current_user_and_no_token(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, json_log: io.StringIO
) -> None:
    node = await start_node(max_frame_size=1024)
    alice, bob = await make_user(), await make_user()
    # Authenticated by its headers; then a frame over the limit (aiohttp's error: 1009).
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    await ws.send_str("x" * 2000)
    assert await recv_close(ws) == 1009
    # Authenticated by a first /auth frame: the records after it name the user.
    ws = await connect(http, node)
    await ws.send_str(f"/auth {bob.x_token} {bob.access_token}")
    assert (await recv(ws))["type"] == "authenticated"
    await ws.send_str("x" * 2000)
    assert await recv_close(ws) == 1009
    # Refused at the handshake: no user.
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(http, node, headers={"x-token": "bad", "x-access-token": "bad"})

    async def all_gone() -> bool:
        return not node.state.connections

    await wait_for(all_gone)
    records = [json.loads(line) for line in json_log.getvalue().splitlines()]
    gateway = [r for r in records if r["logger"] == "wsmq.gateway"]
    assert all("event" in r for r in gateway), gateway
    seen = [(r["event"], r["user"]) for r in gateway if r["event"] in CONNECTION_EVENTS]
    assert seen == [
        ("ws_open", alice.user_id),
        ("ws_error", alice.user_id),
        ("ws_open", None),
        ("ws_error", bob.user_id),
        ("handshake_reject", None),
    ]
    assert all(r["peer"] == "127.0.0.1" for r in gateway if r["event"] in CONNECTION_EVENTS)
    for secret in (alice.x_token, alice.access_token, bob.x_token, bob.access_token):
        assert secret not in json_log.getvalue()

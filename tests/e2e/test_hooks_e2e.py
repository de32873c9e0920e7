"""Hooks and session lifetime on real nodes: sync and async ``authorize`` hooks, the
``expiring`` warning before 4403, readiness following the user store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from wsmq.connections import AnyRedis, redis_from_url
from wsmq.gateway import Gateway
from wsmq.testing.redisproc import free_port

from .conftest import (
    MakeUser,
    StartNode,
    connect,
    recv,
    recv_close,
    subscribe,
    wait_for,
)


@pytest.fixture
async def acl(redis_url: str) -> AsyncIterator[AnyRedis]:
    """A host app's own permission table, in (real) Redis."""
    client = redis_from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_authorize_hook_sync_or_async(
    kind: str,
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    acl: AnyRedis,
) -> None:
    allowed = {"room-1:subscribe", "room-1:send"}
    calls: list[tuple[str, str]] = []

    def sync_hook(user: Any, qname: str, action: str) -> bool:
        calls.append((qname, action))
        if qname == "explodes":
            raise RuntimeError("hook bug")
        return f"{qname}:{action}" in allowed

    async def async_hook(user: Any, qname: str, action: str) -> bool:
        calls.append((qname, action))
        if qname == "explodes":
            raise RuntimeError("hook bug")
        return bool(await acl.sismember(f"acl:{user.user_id}", f"{qname}:{action}"))

    alice = await make_user()
    await acl.sadd(f"acl:{alice.user_id}", *allowed)
    node = await start_node(authorize=sync_hook if kind == "sync" else async_hook)
    ws = await connect(http, node, alice)
    await subscribe(ws, "room-1")
    await ws.send_str(f"/subscribe/{alice.user_id}")  # the hook replaces the own-id rule
    assert (await recv(ws))["code"] == "forbidden"
    await ws.send_str("/send/room-1 hello")
    # The `sent` reply and the delivery (subscribed to room-1 too) come in either order: the
    # consumer may receive the message before the read loop writes the reply.
    frames = {f["type"]: f for f in [await recv(ws), await recv(ws)]}
    assert set(frames) == {"sent", "message"} and frames["message"]["message"] == "hello"
    # Acked, or the socket below (subscribed to room-1 too) could get it again before its reply.
    await ws.send_str(f"/ack/room-1/{frames['message']['id']}")
    assert (await recv(ws))["type"] == "acked"
    await ws.send_str("/send/room-2 hello")
    assert (await recv(ws))["code"] == "forbidden"
    await ws.send_str("/subscribe/explodes")  # a failing hook denies; the socket stays open
    assert (await recv(ws))["code"] == "forbidden"
    await ws.send_str("/subscribe/room-1")  # already subscribed: answered without the hook
    assert await recv(ws) == {"type": "subscribed", "queue": "room-1"}
    assert ("room-1", "subscribe") in calls and calls.count(("room-1", "subscribe")) == 1
    await ws.close()

    # First-message auth: frames sent right behind /auth are decided once the user is known.
    ws = await connect(http, node)
    await ws.send_str(f"/auth {alice.x_token} {alice.access_token}")
    await ws.send_str("/subscribe/room-1")
    await ws.send_str("/subscribe/room-2")
    assert (await recv(ws))["type"] == "authenticated"
    assert await recv(ws) == {"type": "subscribed", "queue": "room-1"}
    assert (await recv(ws))["code"] == "forbidden"
    await ws.close()


async def test_slow_async_authorize_hook_denies_after_timeout(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wsmq.gateway import connection

    monkeypatch.setattr(connection, "AUTHORIZE_TIMEOUT", 0.3)

    async def hangs(user: Any, qname: str, action: str) -> bool:
        await asyncio.Event().wait()
        return True

    alice = await make_user()
    node = await start_node(authorize=hangs)
    ws = await connect(http, node, alice)
    await ws.send_str(f"/subscribe/{alice.user_id}")
    assert (await recv(ws, timeout=5))["code"] == "forbidden"
    await ws.close()


def _exp(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


@pytest.mark.backends("single")  # the warning's timing does not involve Redis
async def test_expiring_warning_then_4403_at_exp(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node(expiry_warning=1.5)
    alice = await make_user(ttl=3)
    exp = _exp(alice.x_token)
    ws = await connect(http, node, alice)
    legacy = await connect(http, node, alice, v1=False)
    await subscribe(ws, alice.user_id)
    warning = await recv(ws, timeout=exp - time.time() + 1)
    warned_at = time.time()
    assert warning["type"] == "expiring"
    assert 0 < warning["seconds"] <= 2
    assert exp - 1.5 - 0.05 <= warned_at < exp
    assert await recv_close(ws, timeout=exp - time.time() + 2) == 4403
    closed_at = time.time()
    assert exp - 0.05 <= closed_at < exp + 1.0
    # A legacy client never gets control frames: just the close at exp.
    assert await recv_close(legacy, timeout=2) == 4403


@pytest.mark.backends("single")  # the warning's timing does not involve Redis
async def test_refresh_after_expiring_warning_keeps_the_socket(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    from .conftest import token_for

    node = await start_node(expiry_warning=1.5)
    alice = await make_user(ttl=2)
    exp = _exp(alice.x_token)
    ws = await connect(http, node, alice)
    assert (await recv(ws, timeout=3))["type"] == "expiring"
    await ws.send_str(f"/refresh {token_for(alice.user_id, ttl=60)}")
    assert (await recv(ws))["type"] == "refreshed"
    with pytest.raises(TimeoutError):  # no 4403 at the old exp
        await recv_close(ws, timeout=exp - time.time() + 1)
    await ws.close()


@pytest.mark.backends("single")  # the warning's timing does not involve Redis
async def test_a_token_shorter_than_the_warning_is_warned_once_at_half_life_per_refresh(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    """The default 60 s warning and 3 s tokens: ``expiring`` comes half the token's remaining
    lifetime before exp, once per token, never right after the ``refreshed`` (which made
    clients refresh in a loop)."""
    from .conftest import token_for

    node = await start_node()  # expiry_warning 60
    alice = await make_user(ttl=3)
    exp = _exp(alice.x_token)
    before = time.time()
    ws = await connect(http, node, alice)
    after = time.time()
    warning = await recv(ws, timeout=exp - time.time() + 1)
    warned_at = time.time()
    assert warning["type"] == "expiring" and 0 < warning["seconds"] <= 2
    assert exp - (exp - before) / 2 - 0.05 <= warned_at <= exp - (exp - after) / 2 + 0.3
    for _ in range(2):
        token = token_for(alice.user_id, ttl=3)
        sent_at = time.time()
        await ws.send_str(f"/refresh {token}")
        refreshed = await recv(ws, timeout=2)
        assert refreshed["type"] == "refreshed" and refreshed["exp"] == _exp(token)
        # The next frame is the new token's one warning, at half its lifetime, not at once.
        warning = await recv(ws, timeout=_exp(token) - time.time())
        warned_at = time.time()
        assert warning["type"] == "expiring"
        assert warned_at >= _exp(token) - (_exp(token) - sent_at) / 2 - 0.05
    # No refresh: after the one warning, the next frame is the close at exp.
    msg = await ws.receive(timeout=_exp(token) - time.time() + 2)
    assert msg.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 4403


async def _readyz(http: aiohttp.ClientSession, node: Gateway) -> tuple[int, dict[str, Any]]:
    async with asyncio.timeout(5):
        async with http.get(f"{node.http_url}/readyz") as resp:
            body: dict[str, Any] = await resp.json()
            return resp.status, body


async def test_readyz_follows_the_users_file(
    start_node: StartNode, http: aiohttp.ClientSession, tmp_path: Path, redis_url: str
) -> None:
    """A shared users file whose volume goes away: 503 (users), existing sockets stay; 200
    again when it is back."""
    volume = tmp_path / "volume"
    from wsmq.testing.users import make_users

    from .conftest import SECRET

    (cred,) = await make_users(volume / "users.json", names=["vol-user"], secret=SECRET)
    node = await start_node(users_file=str(volume / "users.json"))
    # The node re-checks its sockets against the store once its revocation channel is
    # subscribed (the first time included): that must happen while the volume is still there,
    # or it finds no user and closes the socket with 4403 (seen on Sentinel under load).
    client = redis_from_url(redis_url)  # PUBSUB NUMSUB: summed over every cluster node

    async def revocations_subscribed() -> bool:
        counts = await client.pubsub_numsub("rsmq:wsmq:revoke")
        return bool(counts) and int(counts[0][1]) >= 1

    try:
        await wait_for(revocations_subscribed, timeout=10)
    finally:
        await client.aclose()
    assert await _readyz(http, node) == (200, {"status": "ready", "checks": {
        "redis": "ok", "users": "ok"}})  # fmt: skip
    ws = await connect(http, node, cred)
    await subscribe(ws, cred.user_id)
    volume.rename(tmp_path / "unmounted")
    status, body = await _readyz(http, node)
    assert status == 503
    assert body["checks"]["users"] != "ok" and body["checks"]["redis"] == "ok"
    await ws.send_str(f"/subscribe/{cred.user_id}")  # the socket is still served
    assert await recv(ws) == {"type": "subscribed", "queue": cred.user_id}
    (tmp_path / "unmounted").rename(volume)
    assert (await _readyz(http, node))[0] == 200
    await ws.close()


async def test_readyz_and_handshakes_while_mongodb_is_unreachable(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    from pymongo import AsyncMongoClient

    from wsmq.auth import MongoUserStore

    # A MongoDB that is down: nothing listens on the port.
    client: Any = AsyncMongoClient(
        f"mongodb://127.0.0.1:{free_port()}/", serverSelectionTimeoutMS=300
    )
    store = MongoUserStore(client["wsmq"], client=client)
    try:
        node = await start_node(user_store=store, users_file=None)
        status, body = await _readyz(http, node)
        assert status == 503
        assert body["checks"]["redis"] == "ok" and body["checks"]["users"] != "ok"
        alice = await make_user()  # in the users file, which this node does not use
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await connect(http, node, alice)
        assert info.value.status == 503  # try another node, not "bad credentials"
    finally:
        await store.close()


async def test_authenticate_hook_returning_garbage_is_a_json_503(
    start_node: StartNode, http: aiohttp.ClientSession
) -> None:
    async def broken(request: Any) -> Any:
        return object()  # no user_id

    node = await start_node(authenticate=broken)
    from .test_security_e2e import handshake

    status, body = await handshake(http, node, {})
    assert (status, body["error"]) == (503, "unavailable")
    assert (await _readyz(http, node))[0] == 200  # the node is fine


@pytest.mark.parametrize("opted_in", [False, True])
async def test_leave_asks_an_authorize_hook_as_subscribe_unless_it_opted_in_to_leave(
    opted_in: bool, start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    """A hook written for ``subscribe``/``send`` only (denying what it does not know) keeps
    allowing ``/leave``; with ``authorize_leave=True`` it is asked ``leave`` and decides."""
    calls: list[tuple[str, str]] = []

    def strict_hook(user: Any, qname: str, action: str) -> bool:
        calls.append((qname, action))
        if action in ("subscribe", "send"):
            return qname == "room-1"
        if action == "leave":
            return qname == "room-1" and user.user_id != "nobody"
        return False  # unknown actions: denied

    alice = await make_user()
    node = await start_node(authorize=strict_hook, authorize_leave=opted_in)
    ws = await connect(http, node, alice)
    await ws.send_str("/leave/room-1 device=old-phone")
    assert await recv(ws) == {
        "type": "left", "queue": "room-1", "device": "old-phone", "removed": False
    }  # fmt: skip
    await ws.send_str("/leave/room-2 device=old-phone")
    assert (await recv(ws))["code"] == "forbidden"
    action = "leave" if opted_in else "subscribe"
    assert calls == [("room-1", action), ("room-2", action)]
    await ws.close()

"""Security of a real node: handshake rejections, authorization, session lifetime, limits."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import warnings
from typing import Any

import aiohttp
import jwt
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

from wsmq.auth import FileUserStore
from wsmq.connections import redis_from_url
from wsmq.gateway import Gateway
from wsmq.queue import Queues

from .conftest import (
    SECRET,
    MakeUser,
    StartNode,
    connect,
    recv,
    recv_close,
    recv_type,
    subscribe,
    token_for,
    wait_for,
)

_ = HealthCheck  # hypothesis is used for frame generation below


async def handshake(
    http: aiohttp.ClientSession, node: Gateway, headers: dict[str, str], query: str = ""
) -> tuple[int, dict[str, Any]]:
    """A raw upgrade request: the status and JSON body of a rejection (never a 101)."""
    assert node.http_url is not None
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    async with asyncio.timeout(5):
        async with http.get(f"{node.http_url}/{query}", headers={**upgrade, **headers}) as resp:
            text = await resp.text()
            assert resp.status != 101
            try:
                body = json.loads(text)
            except ValueError:  # the HTTP parser's own 400s are plain text
                body = {"text": text}
            return resp.status, body


def _jwt(claims: dict[str, Any], key: str = SECRET) -> str:
    return jwt.encode(claims, key, algorithm="HS256")


async def test_handshake_rejections_never_upgrade(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    user_store: FileUserStore,
) -> None:
    node = await start_node()
    alice = await make_user()
    now = int(time.time())
    expired = _jwt({"sub": f"users/{alice.user_id}", "iat": now - 100, "exp": now - 50})
    forged = _jwt({"sub": f"users/{alice.user_id}", "iat": now, "exp": now + 60}, "x" * 40)
    ghost = token_for("ffffffffffffffffffffffff")
    cases = [
        ({"x-token": "garbage", "x-access-token": alice.access_token}, 401, "malformed"),
        ({"x-token": expired, "x-access-token": alice.access_token}, 401, "expired"),
        ({"x-token": forged, "x-access-token": alice.access_token}, 401, "invalid_signature"),
        ({"x-token": alice.x_token, "x-access-token": "a" * 64}, 401, "invalid_credentials"),
        ({"x-token": ghost, "x-access-token": alice.access_token}, 401, "invalid_credentials"),
        ({"x-token": alice.x_token}, 401, "missing"),
    ]
    for headers, status, code in cases:
        got_status, body = await handshake(http, node, headers)
        assert (got_status, body.get("error")) == (status, code), (code, body)
        assert isinstance(body["message"], str)
        assert alice.access_token not in body["message"]

    await user_store.set_disabled(alice.user_id)
    status, body = await handshake(http, node, {"x-token": alice.x_token,
                                                "x-access-token": alice.access_token})  # fmt: skip
    assert status in (401, 403) and body["error"] in ("disabled", "invalid_credentials")


async def test_origin_allow_list(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node(allowed_origins="https://app.example")
    alice = await make_user()
    status, body = await handshake(
        http, node, {**alice_headers(alice), "Origin": "https://evil.example"}
    )
    assert (status, body["error"]) == (403, "forbidden_origin")
    ws = await connect(http, node, alice, headers={"Origin": "https://app.example"})
    await ws.close()
    ws = await connect(http, node, alice)  # no Origin: not a browser
    await ws.close()
    same_host = await start_node()  # empty allow-list: same origin only
    assert same_host.http_url is not None
    status, _ = await handshake(
        http, same_host, {**alice_headers(alice), "Origin": "https://evil.example"}
    )
    assert status == 403
    ws = await connect(http, same_host, alice, headers={"Origin": same_host.http_url})
    await ws.close()


async def upgrade_status(http: aiohttp.ClientSession, port: int, headers: dict[str, str]) -> int:
    """The status of a raw upgrade request to ``127.0.0.1:port`` (101 when accepted)."""
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Protocol": "wsmq.v1",
    }
    async with asyncio.timeout(5):
        async with http.get(f"http://127.0.0.1:{port}/", headers={**upgrade, **headers}) as resp:
            return resp.status


# Single only: the Origin check never touches Redis; other backends would repeat it.
@pytest.mark.backends("single")
async def test_origin_compares_scheme_host_port_and_does_not_trust_host(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    """Same-origin mode: a DNS name in ``Host`` is the attacker's own under DNS rebinding, and
    an https page is another origin than an http node."""
    alice = await make_user()
    auth = alice_headers(alice)
    node = await start_node()
    assert node.port is not None
    here = f"127.0.0.1:{node.port}"
    ok = {"Origin": f"http://{here}"}
    assert await upgrade_status(http, node.port, {**auth, **ok}) == 101
    rebound = {"Origin": "http://evil.example", "Host": "evil.example"}
    assert await upgrade_status(http, node.port, {**auth, **rebound}) == 403
    other_scheme = {"Origin": f"https://{here}"}
    assert await upgrade_status(http, node.port, {**auth, **other_scheme}) == 403
    other_port = {"Origin": "http://127.0.0.1:1"}
    assert await upgrade_status(http, node.port, {**auth, **other_port}) == 403
    # X-Forwarded-Proto counts only from a trusted proxy (TLS ends at the proxy).
    behind_tls = {"Origin": f"https://{here}", "X-Forwarded-Proto": "https"}
    assert await upgrade_status(http, node.port, {**auth, **behind_tls}) == 403
    proxied = await start_node(trusted_proxies="127.0.0.1")
    assert proxied.port is not None
    behind_tls["Origin"] = f"https://127.0.0.1:{proxied.port}"
    assert await upgrade_status(http, proxied.port, {**auth, **behind_tls}) == 101
    # A public name: its origin (wss -> https, default port) and nothing else.
    public = await start_node(public_url="wss://mq.example.com/")
    assert public.port is not None
    for origin, status in [
        ("https://mq.example.com", 101),
        ("https://mq.example.com:443", 101),
        ("http://mq.example.com", 403),
        ("https://mq.example.com:8443", 403),
        ("https://evil.example", 403),
    ]:
        headers = {**auth, "Origin": origin, "Host": "mq.example.com"}
        assert await upgrade_status(http, public.port, headers) == status, origin


def alice_headers(cred: Any) -> dict[str, str]:
    return dict(cred.headers)


@pytest.mark.backends("single")  # in-band auth and its deadline do not involve Redis
async def test_first_message_auth(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    node = await start_node(auth_deadline=1.5)
    alice = await make_user()
    ws = await connect(http, node)
    await ws.send_str(f"/auth {alice.x_token} {alice.access_token}")
    await ws.send_str(f"/subscribe/{alice.user_id}")  # pipelined before the reply
    assert (await recv(ws))["type"] == "authenticated"
    assert (await recv(ws))["type"] == "subscribed"
    await ws.close()

    ws = await connect(http, node)
    await ws.send_str(f"/auth {alice.x_token} wrong-access-token")
    assert await recv_close(ws) == 4401
    ws = await connect(http, node)
    await ws.send_str(f"/subscribe/{alice.user_id}")
    assert await recv_close(ws) == 4401
    ws = await connect(http, node)  # says nothing
    assert await recv_close(ws) == 4408
    # Query-string tokens are ignored unless the operator opts in.
    ws = await connect(http, node, params={"x-token": alice.x_token,
                                            "x-access-token": alice.access_token})  # fmt: skip
    assert await recv_close(ws) == 4408
    opted_in = await start_node(allow_query_token=True)
    ws = await connect(http, opted_in, params={"x-token": alice.x_token,
                                                "x-access-token": alice.access_token})  # fmt: skip
    await subscribe(ws, alice.user_id)
    await ws.close()
    for secret in (alice.x_token, alice.access_token):
        assert secret not in caplog.text  # tokens are never logged


async def test_connection_and_header_caps(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node(max_connections=1, max_header_size=2048)
    alice = await make_user()
    status, _ = await handshake(http, node, {**alice.headers, "x-padding": "p" * 4096})
    assert status == 400  # header line over max_header_size: refused by the HTTP parser
    ws = await connect(http, node, alice)
    status, body = await handshake(http, node, alice.headers)
    assert (status, body["error"]) == (503, "too_many_connections")
    await ws.close()


async def test_forbidden_subscription_keeps_socket_open(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node()
    alice, bob = await make_user(), await make_user()
    ws = await connect(http, node, alice)
    await ws.send_str(f"/subscribe/{bob.user_id}")
    err = await recv_type(ws, "error")
    assert (err["code"], err["queue"]) == ("forbidden", bob.user_id)
    await subscribe(ws, alice.user_id)  # still open and working
    legacy = await connect(http, node, alice, v1=False)
    await legacy.send_str(f"/subscribe/{bob.user_id}")
    err = await recv(legacy)
    assert err["code"] == "forbidden" and "message" not in err  # never mistaken for a delivery
    await ws.close()
    await legacy.close()


@pytest.mark.backends("single")  # token expiry and refresh timing do not involve Redis
async def test_session_expiry_and_refresh(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node()
    alice = await make_user(ttl=1)
    bob = await make_user()
    ws = await connect(http, node, alice)
    assert await recv_close(ws, timeout=5) == 4403

    issued = time.time()
    alice2 = await make_user(ttl=4)
    ws = await connect(http, node, alice2)
    await ws.send_str(f"/refresh {bob.x_token}")  # another user's token
    err = await recv_type(ws, "error")
    assert err["code"] == "refresh_failed"
    await ws.send_str(f"/refresh {token_for(alice2.user_id, ttl=60)}")
    refreshed = await recv_type(ws, "refreshed")
    assert refreshed["exp"] > time.time() + 30
    with pytest.raises(TimeoutError):  # no 4403 at the old expiry
        await recv_close(ws, timeout=max(issued + 4 + 1.5 - time.time(), 0.5))
    await ws.close()


async def test_revocation_on_other_node_closes_socket(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, redis_url: str
) -> None:
    node_a, node_b = await start_node(), await start_node()
    alice = await make_user()
    client = redis_from_url(redis_url)  # PUBSUB NUMSUB: summed over every cluster node

    async def both_listening() -> bool:
        counts = await client.pubsub_numsub("rsmq:wsmq:revoke")
        return bool(counts) and int(counts[0][1]) >= 2

    await wait_for(both_listening)
    await client.aclose()
    ws = await connect(http, node_b, alice)
    await subscribe(ws, alice.user_id)
    async with http.post(
        f"{node_a.http_url}/auth/logout",
        json={"userId": alice.user_id},
        headers={"x-access-token": alice.access_token},
    ) as resp:
        assert resp.status == 200, await resp.text()
        revoked_at = time.monotonic()  # published to every node before the reply
    assert await recv_close(ws, timeout=3) == 4403
    assert time.monotonic() - revoked_at < 1.0
    status, _ = await handshake(http, node_b, alice_headers(alice))
    assert status == 401  # the access token is gone for good


async def test_limits_frame_size_rate_and_garbage(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    node = await start_node(max_frame_size=1024, rate_limit=20, rate_burst=20)
    alice = await make_user()
    ws = await connect(http, node, alice)
    for frame in [
        "hello",
        "/subscribe/",
        "/subscribe/bad name!",
        "/ack/q/short",
        "/nope",
        "",
        "/auth a b",
    ]:
        await ws.send_str(frame)
        assert (await recv_type(ws, "error"))["code"]
    await ws.send_bytes(b"/subscribe/\xff\x00")
    assert (await recv_type(ws, "error"))["code"] == "binary_not_supported"
    await subscribe(ws, alice.user_id)  # still fine
    await ws.send_str("x" * 2000)
    assert await recv_close(ws) == 1009

    ws = await connect(http, node, alice)
    for _ in range(40):
        await ws.send_str(f"/subscribe/{alice.user_id}")
    assert await recv_close(ws) == 4429


async def test_hypothesis_frame_burst_never_hurts_the_node(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession, redis_url: str
) -> None:
    node = await start_node(rate_limit=100_000, rate_burst=100_000)
    alice, bob = await make_user(), await make_user()
    queues = Queues.from_url(redis_url)
    await queues.create_queue(alice.user_id)
    bystander = await connect(http, node, bob)
    await subscribe(bystander, bob.user_id)
    word = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
    command = st.sampled_from(
        ["/subscribe/", "/unsubscribe/", "/ack/", "/send/", "/auth ", "/refresh ", "/", ""]
    )
    frames = st.one_of(
        st.builds(lambda c, w: c + w, command, word),
        st.builds(lambda c, a, b: f"{c}{a}/{b}", command, word, word),
        st.binary(max_size=64),
        st.text(max_size=200),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        burst = [frames.example() for _ in range(300)]
    for mode in (True, False):
        ws = await connect(http, node, alice, v1=mode)
        for frame in burst:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        await ws.send_str(f"/subscribe/{alice.user_id}")
        await queues.send_message(alice.user_id, "still alive")
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
                if '"still alive"' in msg.data:
                    break
        await ws.close()
    await queues.send_message(bob.user_id, "bystander ok")
    assert (await recv_type(bystander, "message"))["message"] == "bystander ok"
    async with http.get(f"{node.http_url}/healthz") as resp:
        assert resp.status == 200
    await bystander.close()
    await queues.close()


@pytest.mark.backends("single")  # the node timer does not involve Redis
async def test_session_deadlines_share_the_node_timer_and_leave_with_the_socket(
    start_node: StartNode, make_user: MakeUser, http: aiohttp.ClientSession
) -> None:
    """Each open socket has one entry on the node's DeadlineTimer (its token expiry); frames
    do not add entries, and a closed socket takes its entry with it (no reference kept until
    its expiry). An unauthenticated socket still gets 4408 from the same timer."""
    node = await start_node(auth_deadline=1.5)
    timer = node.state.deadlines
    alice = await make_user()
    sockets = [await connect(http, node, alice) for _ in range(5)]
    assert len(timer) == 5
    for ws in sockets:
        await subscribe(ws, alice.user_id)
        await ws.send_str("/nonsense")
        assert (await recv_type(ws, "error"))["code"] == "unknown_command"
    assert len(timer) == 5 and len(timer._heap) <= 10
    waiting = await connect(http, node, None)  # no tokens: must send /auth within the deadline
    assert len(timer) == 6
    for ws in sockets:
        await ws.close()

    async def only_the_waiting_one() -> bool:
        return len(timer) == 1

    await wait_for(only_the_waiting_one)
    assert await recv_close(waiting, timeout=5) == 4408
    await wait_for(lambda: asyncio.sleep(0, len(timer) == 0))

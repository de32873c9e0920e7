"""/auth/login, /auth/token, /auth/logout on a real aiohttp server and a real Redis bus."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from wsmq.auth import (
    AuthConfig,
    Authenticator,
    AuthError,
    FileUserStore,
    RevocationBus,
    User,
    add_auth_routes,
    authenticator,
    tokens,
)
from wsmq.auth.limiter import AuthLimits
from wsmq.auth.routes import client_address

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


#: Generous per-address limit: these tests are about answers, not limits (test_auth_limits.py).
LIMITS = AuthLimits(attempts_per_ip=100, window=60.0, user_free_failures=3, user_max_delay=2.0)


class Env:
    def __init__(self, client: TestClient[Any, Any], store: FileUserStore, auth: Authenticator):
        self.client, self.store, self.auth = client, store, auth


@pytest.fixture
async def env(
    aiohttp_client: ClientFactory, file_store: FileUserStore, cfg: AuthConfig, redis_url: str
) -> Env:
    auth = Authenticator(cfg, file_store)
    app = web.Application()
    add_auth_routes(
        app, auth, file_store, RevocationBus(redis_url), limits=LIMITS, redis_url=redis_url
    )
    return Env(await aiohttp_client(app), file_store, auth)


async def make_user(env: Env, name: str = "alice", password: str = "s3cret") -> tuple[User, str]:
    return await env.store.create(name, password, ["news"])


async def post(env: Env, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, str | bytes) else json.dumps(body or {})
    resp = await env.client.post(path, data=data, headers=headers)
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


def at(access_token: str) -> dict[str, str]:
    return {"x-access-token": access_token}


async def test_login_issues_a_working_pair(env: Env) -> None:
    user, old_access = await make_user(env)
    status, body = await post(env, "/auth/login", {"userName": "alice", "password": "s3cret"})
    assert status == 200
    assert set(body) == {"token", "accessToken", "expiresIn", "userId"}
    assert body["expiresIn"] == 900 and body["userId"] == user.id
    got = await env.auth.verify(body["token"], body["accessToken"])
    assert got.user_name == "alice"
    # Login replaces the previous access token (documented: one access token per user).
    with pytest.raises(AuthError, match="invalid credentials"):
        await env.auth.verify(body["token"], old_access)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"userName": "alice", "password": "wrong"}, 401, "invalid_credentials"),
        ({"userName": "nobody", "password": "s3cret"}, 401, "invalid_credentials"),
        ({"userName": "alice"}, 400, "bad_request"),
        ({"userName": 5, "password": "x"}, 400, "bad_request"),
        ("{not json", 400, "bad_request"),
        ("[1, 2]", 400, "bad_request"),
    ],
)
async def test_login_errors(env: Env, body: Any, status: int, code: str) -> None:
    await make_user(env)
    got_status, got = await post(env, "/auth/login", body)
    assert (got_status, got["error"]) == (status, code)
    assert isinstance(got["message"], str) and got["message"]


async def test_login_disabled_is_403(env: Env) -> None:
    user, _ = await make_user(env)
    await env.store.set_disabled(user.id)
    status, body = await post(env, "/auth/login", {"userName": "alice", "password": "s3cret"})
    assert (status, body["error"]) == (403, "disabled")


async def test_token_endpoint(env: Env) -> None:
    user, access = await make_user(env)
    status, body = await post(env, "/auth/token", {"userId": user.id}, **at(access))
    assert status == 200 and set(body) == {"token", "expiresIn", "userId"}
    assert (await env.auth.verify(body["token"], access)).user_id == user.id
    status, body = await post(env, "/auth/token", {"userName": "alice"}, **at(access))
    assert status == 200
    status, body = await post(env, "/auth/token", {"userId": user.id}, **at("no"))
    assert (status, body["error"]) == (401, "invalid_credentials")
    status, body = await post(env, "/auth/token", {"userId": user.id})
    assert (status, body["error"]) == (401, "missing")
    status, body = await post(env, "/auth/token", {}, **at(access))
    assert (status, body["error"]) == (400, "bad_request")
    status, body = await post(env, "/auth/token", {"userName": "zed"}, **at(access))
    assert (status, body["error"]) == (401, "invalid_credentials")
    # Disabling clears the access token: its holder is told nothing more than anyone else.
    await env.store.set_disabled(user.id)
    status, body = await post(env, "/auth/token", {"userId": user.id}, **at(access))
    assert (status, body["error"]) == (401, "invalid_credentials")


async def test_logout_revokes_and_publishes(env: Env, redis_url: str) -> None:
    user, access = await make_user(env)
    token, _ = env.auth.issue_jwt(user.id)
    listener = aioredis.Redis.from_url(redis_url)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("rsmq:wsmq:revoke")
    try:
        # The user comes from the x-token header here (the demo page sends both).
        headers = {"x-access-token": access, "x-token": token}
        status, body = await post(env, "/auth/logout", {}, **headers)
        assert (status, body) == (200, {"revoked": True})
        async with asyncio.timeout(1):
            while (msg := await pubsub.get_message(timeout=1)) is None:
                pass
        assert json.loads(msg["data"]) == {"userId": user.id}
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
        await listener.aclose()
    with pytest.raises(AuthError, match="invalid credentials"):
        await env.auth.verify(token, access)
    # Logging out twice, or with a wrong token, is refused.
    status, body = await post(env, "/auth/logout", {"userId": user.id}, **at(access))
    assert (status, body["error"]) == (401, "invalid_credentials")


async def test_body_too_large(env: Env) -> None:
    status, body = await post(env, "/auth/login", {"userName": "a", "password": "x" * 20_000})
    assert (status, body["error"]) == (413, "bad_request")


@pytest.mark.parametrize(
    ("remote", "forwarded", "expected"),
    [
        ("10.0.0.9", "1.2.3.4", "10.0.0.9"),  # not a trusted proxy: the header is ignored
        ("127.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client forged the left part
        ("127.0.0.1", "1.2.3.4, 127.0.0.2", "1.2.3.4"),  # two trusted proxies in a row
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", " , ", "127.0.0.1"),
        (None, None, "unknown"),
    ],
)
def test_client_address(remote: str | None, forwarded: str | None, expected: str) -> None:
    assert client_address(remote, forwarded, {"127.0.0.1", "127.0.0.2"}) == expected


async def test_login_limit_per_forwarded_client_behind_a_trusted_proxy(
    aiohttp_client: ClientFactory, file_store: FileUserStore, cfg: AuthConfig, redis_url: str
) -> None:
    auth = Authenticator(cfg, file_store)
    app = web.Application()
    add_auth_routes(
        app,
        auth,
        file_store,
        None,
        limits=AuthLimits(attempts_per_ip=2),
        redis_url=redis_url,
        trusted_proxies=("127.0.0.1", "::1"),
    )
    client = await aiohttp_client(app)

    async def login(forwarded_for: str) -> int:
        body = {"userName": "nobody", "password": "x"}
        resp = await client.post(
            "/auth/login", json=body, headers={"X-Forwarded-For": forwarded_for}
        )
        return resp.status

    assert [await login("1.1.1.1") for _ in range(3)] == [401, 401, 429]
    assert await login("2.2.2.2") == 401  # another client behind the same proxy is not blocked


@pytest.mark.parametrize("path", ["/auth/token", "/auth/logout"])
async def test_unknown_users_get_the_same_answer_as_wrong_tokens(env: Env, path: str) -> None:
    user, access = await make_user(env)
    _bob, bob_access = await make_user(env, "bob")
    attempts = [
        ({"userName": "nobody"}, access),
        ({"userId": "ffffffffffffffffffffffff"}, access),
        ({"userName": "alice"}, bob_access),
        ({"userId": user.id}, "a" * 43),
    ]
    answers = []
    for body, token in attempts:
        resp = await env.client.post(path, json=body, headers=at(token))
        answers.append((resp.status, await resp.read(), resp.headers.get("WWW-Authenticate")))
    resp = await env.client.post("/auth/login", json={"userName": "nobody", "password": "x"})
    answers.append((resp.status, await resp.read(), resp.headers.get("WWW-Authenticate")))
    assert len(set(answers)) == 1, answers
    assert answers[0][0] == 401
    assert json.loads(answers[0][1]) == {"error": "invalid_credentials",
                                         "message": "invalid credentials"}  # fmt: skip


async def test_unknown_users_cost_an_access_token_check(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No cheap timing oracle: an unknown user is hashed against like a known one."""
    user, _ = await make_user(env)
    checked: list[str | None] = []
    real = tokens.access_token_matches

    def spy(token: str, stored_hash: str | None) -> bool:
        checked.append(stored_hash)
        return real(token, stored_hash)

    monkeypatch.setattr(authenticator, "access_token_matches", spy)
    for body in ({"userName": "nobody"}, {"userId": user.id}):
        assert (await post(env, "/auth/token", body, **at("a" * 43)))[0] == 401
    assert len(checked) == 2 and checked[0] is None and checked[1] is not None


@pytest.mark.parametrize(
    "body",
    [
        "[" * 5000,
        '{"a":' * 3000,
        '{"userName": "alice", "password": ' + "[" * 9 + "]" * 9 + "}",
    ],
)
async def test_deeply_nested_json_is_a_400_without_traceback(
    env: Env, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    status, got = await post(env, "/auth/login", body)
    assert (status, got["error"]) == (400, "bad_request")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_brackets_inside_strings_are_not_nesting(env: Env) -> None:
    await make_user(env, "[[[[[[[[[[[[", 'p\\"[[[[[[[[[[{{{{{{')
    body = json.dumps({"userName": "[[[[[[[[[[[[", "password": 'p\\"[[[[[[[[[[{{{{{{'})
    status, got = await post(env, "/auth/login", body)
    assert status == 200, got


async def test_a_body_sent_in_pieces_is_read_whole(env: Env) -> None:
    await make_user(env)
    body = json.dumps({"userName": "alice", "password": "s3cret", "pad": " " * 12_000}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]
            await asyncio.sleep(0)  # let the server read what has arrived

    resp = await env.client.post("/auth/login", data=pieces())
    assert resp.status == 200, await resp.text()

"""A node ends sockets whose access is gone, even when no revocation event reached it.

``/refresh`` asks the user store (a disable or a logout without a broadcast); and after the
revocation channel was down, a re-check compares every socket's access token with the store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.auth import FileUserStore, PasswordHasher, User
from wsmq.gateway import Gateway
from wsmq.testing.redisproc import RedisProcess

from .conftest import (
    Cred,
    MakeUser,
    StartNode,
    connect,
    recv,
    recv_close,
    recv_type,
    subscribe,
    token_for,
)

StoreChange = Callable[[FileUserStore, str], Awaitable[Any]]

STORE_CHANGES: dict[str, StoreChange] = {
    "disabled": lambda store, uid: store.set_disabled(uid),
    "logged_out": lambda store, uid: store.clear_access_token(uid),
    "password_changed": lambda store, uid: store.set_password(uid, "another-password-1"),
    "logged_in_elsewhere": lambda store, uid: store.set_access_token(uid),
}


@pytest.mark.backends("single")  # about the user store, not the Redis deployment
@pytest.mark.parametrize("change", list(STORE_CHANGES))
async def test_refresh_is_refused_when_the_store_revoked_access_without_a_broadcast(
    change: str,
    start_node: StartNode,
    make_user: MakeUser,
    user_store: FileUserStore,
    http: aiohttp.ClientSession,
) -> None:
    node = await start_node()
    alice, bob = await make_user(), await make_user()
    ws = await connect(http, node, alice)
    await subscribe(ws, alice.user_id)
    bystander = await connect(http, node, bob)
    await STORE_CHANGES[change](user_store, alice.user_id)  # no revocation is published
    await ws.send_str(f"/refresh {token_for(alice.user_id, ttl=600)}")
    err = await recv_type(ws, "error")
    assert err["code"] == "refresh_failed"
    assert await recv_close(ws, timeout=5) == 4403
    # The other user's refresh still works and its socket stays.
    await bystander.send_str(f"/refresh {token_for(bob.user_id, ttl=600)}")
    assert (await recv_type(bystander, "refreshed"))["exp"] > 0
    await bystander.close()


@pytest.mark.backends("single")
async def test_refresh_with_the_store_down_fails_but_keeps_the_socket(
    start_node: StartNode, make_user: MakeUser, users_file: Path, http: aiohttp.ClientSession
) -> None:
    store = FlakyStore(users_file, hasher=PasswordHasher(n=2**4))
    node = await start_node(user_store=store)
    alice = await make_user()
    ws = await connect(http, node, alice)
    store.fail_next(1)
    await ws.send_str(f"/refresh {token_for(alice.user_id, ttl=600)}")
    err = await recv_type(ws, "error")
    assert err["code"] == "refresh_failed"
    await ws.send_str(f"/refresh {token_for(alice.user_id, ttl=600)}")  # the store is back
    assert (await recv_type(ws, "refreshed"))["exp"] > 0
    await ws.close()


class FlakyStore(FileUserStore):
    """The users file, whose ``get`` fails the next ``n`` times when told to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures_left = 0
        self.failed = 0

    def fail_next(self, n: int) -> None:
        self.failures_left = n

    async def get(self, user_id: str) -> User | None:
        if self.failures_left > 0:
            self.failures_left -= 1
            self.failed += 1
            raise ConnectionError("the user store is down")
        return await super().get(user_id)


async def _login(http: aiohttp.ClientSession, node: Gateway, name: str) -> Cred:
    async with http.post(
        f"{node.http_url}/auth/login", json={"userName": name, "password": "password-123"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return Cred(body["userId"], body["token"], body["accessToken"])


async def _logout(http: aiohttp.ClientSession, node: Gateway, cred: Cred) -> None:
    async with http.post(
        f"{node.http_url}/auth/logout",
        json={"userId": cred.user_id},
        headers={"x-access-token": cred.access_token},
    ) as resp:
        assert resp.status == 200, await resp.text()


async def _still_open(ws: aiohttp.ClientWebSocketResponse, user_id: str) -> None:
    await ws.send_str(f"/refresh {token_for(user_id, ttl=600)}")
    assert (await recv(ws))["type"] == "refreshed"


@pytest.mark.backends("single")  # stops its own redis-server
async def test_logout_while_the_revocation_channel_was_down_closes_only_that_token(
    start_node: StartNode,
    make_user: MakeUser,
    http: aiohttp.ClientSession,
    redis_factory: Callable[..., RedisProcess],
) -> None:
    proc = redis_factory()
    node = await start_node(redis_url=proc.url)
    carol = await make_user("carol")
    dave = await make_user("dave")
    old = await connect(http, node, carol)
    other_user = await connect(http, node, dave)

    proc.stop()  # the node's revocation subscription is gone: the logout event is lost
    await _logout(http, node, carol)
    carol_again = await _login(http, node, "carol")  # a new access token for carol
    new = await connect(http, node, carol_again)
    proc.start()

    # The re-check after the channel reconnects finds carol's old access token gone.
    assert await recv_close(old, timeout=15) == 4403
    await _still_open(new, carol.user_id)
    await _still_open(other_user, dave.user_id)
    await new.close()
    await other_user.close()


@pytest.mark.backends("single")  # stops its own redis-server
async def test_store_errors_during_the_recheck_are_retried(
    start_node: StartNode,
    make_user: MakeUser,
    users_file: Path,
    http: aiohttp.ClientSession,
    redis_factory: Callable[..., RedisProcess],
) -> None:
    proc = redis_factory()
    store = FlakyStore(users_file, hasher=PasswordHasher(n=2**4))
    node = await start_node(redis_url=proc.url, user_store=store)
    erin = await make_user("erin")
    ws = await connect(http, node, erin)

    proc.stop()
    await store.clear_access_token(erin.user_id)  # a logout whose event nobody heard
    store.fail_next(3)
    proc.start()

    assert await recv_close(ws, timeout=20) == 4403
    assert store.failed == 3

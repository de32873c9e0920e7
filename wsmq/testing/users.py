"""Users for tests, the chaos and soak suites, the benchmark and the demo: one way to make them.

:func:`make_users` creates users in a users file (or any open
:class:`~wsmq.auth.users.UserStore`) and returns what a client needs to connect: id, name,
password, access token and, given the nodes' secret, a signed x-token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsmq.auth import AuthConfig, FileUserStore, PasswordHasher, UserStore, issue_jwt

__all__ = ["CHEAP_HASHER", "DEFAULT_PASSWORD", "TestUser", "make_users", "token_for"]

DEFAULT_PASSWORD = "password-123"  # noqa: S105 - test users on loopback only
#: Cheap scrypt for users whose password hashing is not what is under test.
CHEAP_HASHER = PasswordHasher(n=2**4)


@dataclass(frozen=True)
class TestUser:
    """A created user and the tokens of its handshake (``x_token`` is empty without a secret)."""

    __test__ = False  # not a pytest test class despite the name

    user_id: str
    x_token: str
    access_token: str
    name: str = ""
    password: str = ""
    queues: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()

    @property
    def headers(self) -> dict[str, str]:
        """The WebSocket handshake headers."""
        return {"x-token": self.x_token, "x-access-token": self.access_token}


def token_for(user_id: str, secret: str, ttl: int | None = None) -> str:
    """A signed x-token (HS256 JWT) for ``user_id``."""
    return issue_jwt(user_id, AuthConfig(secret=secret), ttl=ttl)[0]


async def make_users(
    where: Path | UserStore,
    count: int = 1,
    *,
    names: Sequence[str] = (),
    passwords: Sequence[str] = (),
    prefix: str = "user",
    queues: Sequence[str] = (),
    publish: Sequence[str] = (),
    secret: str | None = None,
    ttl: int | None = None,
    hasher: PasswordHasher | None = CHEAP_HASHER,
) -> list[TestUser]:
    """Create users allowed to subscribe to ``queues`` (and their own id) and publish to
    ``publish``.

    ``names`` (then ``count`` is their number) or ``prefix0``, ``prefix1``, ...; ``passwords``
    pairs with them (default :data:`DEFAULT_PASSWORD`). ``where`` is a users file (opened with
    ``hasher``, ``None`` for the product's default cost, and closed again) or an open store,
    left open. With ``secret`` each user also gets an x-token valid for ``ttl`` seconds.
    """
    user_names = list(names) or [f"{prefix}{i}" for i in range(count)]
    if passwords and len(passwords) != len(user_names):
        raise ValueError("passwords must pair with the user names")
    store = FileUserStore(where, hasher=hasher) if isinstance(where, Path) else where
    users: list[TestUser] = []
    try:
        for i, name in enumerate(user_names):
            password = passwords[i] if passwords else DEFAULT_PASSWORD
            user, access = await store.create(name, password, tuple(queues), tuple(publish))
            x_token = token_for(user.id, secret, ttl) if secret is not None else ""
            users.append(
                TestUser(user.id, x_token, access, name, password, user.queues, user.publish)
            )
    finally:
        if store is not where:
            await store.close()
    return users

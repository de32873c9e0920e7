"""The user model, the :class:`UserStore` protocol and helpers shared by the stores.

Both stores keep the same document shape (MongoDB collection ``users``)::

    {"_id": <24-hex id>, "userName": str, "passwordHash": "$scrypt$...",
     "accessTokenHash": <sha256 hex> | None, "queues": [str], "publish": [str], "disabled": bool}

``accessToken`` (plaintext, tokens2 era) is read for legacy migration only and never written.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from wsmq.auth.errors import InvalidUserData
from wsmq.protocol.names import QNAME_RULE, is_valid_qname

MAX_USER_NAME = 128


@dataclass(frozen=True)
class User:
    """A user as stored (hashes only, never a token or password)."""

    id: str
    user_name: str
    password_hash: str | None = None
    access_token_hash: str | None = None
    queues: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    disabled: bool = False
    legacy_access_token: str | None = None

    def public_json(self) -> dict[str, object]:
        """What ``wsmq user list`` shows: no hashes."""
        return {
            "id": self.id,
            "userName": self.user_name,
            "queues": list(self.queues),
            "publish": list(self.publish),
            "disabled": self.disabled,
        }


@runtime_checkable
class UserStore(Protocol):
    """Where users live. All methods are coroutines; implementations are safe to share."""

    async def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        ...

    async def get_by_name(self, user_name: str) -> User | None:
        """The user with this name, or None."""
        ...

    async def create(
        self,
        user_name: str,
        password: str,
        queues: Iterable[str] = (),
        publish: Iterable[str] = (),
    ) -> tuple[User, str]:
        """Add a user; returns it and its first access token (shown once). Raises UserExists."""
        ...

    async def set_access_token(self, user_id: str) -> str:
        """Replace the user's access token with a new one and return it (UserNotFound)."""
        ...

    async def clear_access_token(self, user_id: str) -> None:
        """Revoke the user's access token (UserNotFound)."""
        ...

    async def set_password(self, user_id: str, password: str) -> None:
        """Change the password and revoke the access token (UserNotFound)."""
        ...

    async def set_disabled(self, user_id: str, disabled: bool = True) -> None:
        """Disable (and revoke the access token of) or re-enable a user (UserNotFound)."""
        ...

    async def list(self) -> list[User]:
        """All users, sorted by name."""
        ...

    async def ping(self) -> bool:
        """Whether the backing store is reachable (for ``/readyz``)."""
        ...

    async def close(self) -> None:
        """Release connections the store opened itself."""
        ...


_PROCESS_RANDOM = os.urandom(5)
_COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


def _reseed() -> None:
    # A forked child must not reuse its parent's random part.
    global _PROCESS_RANDOM, _COUNTER
    _PROCESS_RANDOM = os.urandom(5)
    _COUNTER = itertools.count(int.from_bytes(os.urandom(3), "big"))


os.register_at_fork(after_in_child=_reseed)


def new_user_id() -> str:
    """A new user id: 24 hex digits laid out as a MongoDB ObjectId, for every store.

    4 bytes of seconds, 5 random bytes per process, a 3-byte counter (what ``bson`` does,
    without importing the MongoDB driver for the users-file store).
    """
    count = next(_COUNTER) & 0xFFFFFF
    raw = int(time.time()).to_bytes(4, "big") + _PROCESS_RANDOM + count.to_bytes(3, "big")
    return raw.hex()


def validate_user_name(user_name: object) -> str:
    """A user name: 1-128 printable characters, no whitespace at either end, NFC."""
    if not isinstance(user_name, str):
        raise InvalidUserData("the user name must be a string")
    name = unicodedata.normalize("NFC", user_name)
    if not name or len(name) > MAX_USER_NAME or name != name.strip():
        raise InvalidUserData(f"the user name must be 1-{MAX_USER_NAME} characters, not padded")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise InvalidUserData("the user name contains control characters")
    return name


def validate_queue_names(
    queues: Iterable[str] | str | None, what: str = "queues"
) -> tuple[str, ...]:
    """Queue names (RSMQ rules), deduplicated in order. A string is split on commas."""
    if queues is None:
        return ()
    if isinstance(queues, str):
        queues = [q.strip() for q in queues.split(",") if q.strip()]
    out: list[str] = []
    for q in queues:
        if not is_valid_qname(q):
            raise InvalidUserData(f"{what}: {q!r} is not a valid queue name ({QNAME_RULE})")
        if q not in out:
            out.append(q)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _shared(names: tuple[str, ...]) -> tuple[str, ...]:
    # Every socket of a user keeps its User: equal queue lists share one tuple instead of one
    # copy per socket (a service account allowed on 1000 queues costs ~8 KB per copy).
    return names


#: A stored user document (file or MongoDB): ``userName``, ``passwordHash``, ``queues``, ...
UserDoc = dict[str, object]


def user_from_doc(doc: Mapping[str, object]) -> User:
    """Build a :class:`User` from a stored document (tolerant of missing optional fields)."""
    legacy = doc.get("accessToken")
    return User(
        id=str(doc["_id"]),
        user_name=str(doc.get("userName", "")),
        # Stored by this module's writers: strings or None.
        password_hash=cast("str | None", doc.get("passwordHash")),
        access_token_hash=cast("str | None", doc.get("accessTokenHash")),
        # map(str, ...) runs in C: a service account's list of 10k queues is read per handshake
        queues=_shared(tuple(map(str, cast("Iterable[object]", doc.get("queues") or ())))),
        publish=_shared(tuple(map(str, cast("Iterable[object]", doc.get("publish") or ())))),
        disabled=bool(doc.get("disabled", False)),
        legacy_access_token=legacy if isinstance(legacy, str) else None,
    )

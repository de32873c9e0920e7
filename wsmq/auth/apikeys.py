"""API keys of the HTTP API (``/api/``): named, scoped, stored only as hashes in the user store.

A key is ``wsmq_`` + 43 URL-safe characters (256 random bits), shown once when it is added.
The store keeps its SHA-256 (a fast hash is right for a random 256-bit secret: there is nothing
to guess), its name, scopes and creation time:

- MongoDB: collection ``apikeys``, documents ``{"_id": name, "keyHash", "scopes", "created"}``;
- the users file: a top-level ``"apikeys"`` list of the same documents beside ``"users"``.

:class:`ApiKeyIndex` checks presented keys against an in-memory copy of the store re-read every
few seconds, so a known and an unknown key cost the same: one SHA-256, one dict lookup and one
constant-time comparison (against a dummy digest when the key is unknown), never a store query.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from wsmq.auth.errors import UserStoreError
from wsmq.auth.file_store import FileUserStore
from wsmq.auth.users import UserStore

__all__ = [
    "SCOPES",
    "ApiKey",
    "ApiKeyExists",
    "ApiKeyIndex",
    "ApiKeyNotFound",
    "ApiKeyStore",
    "InvalidApiKeyData",
    "api_key_store",
    "hash_api_key",
    "new_api_key",
    "validate_scopes",
]

#: What a key may do: send messages; read queues, messages and nodes; change queues and users.
SCOPES = ("publish", "read", "admin")
KEY_PREFIX = "wsmq_"
NAME_RULE = "1-64 characters: letters, digits, '_', '-', '.'"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
COLLECTION = "apikeys"
SECTION = "apikeys"


class ApiKeyExists(UserStoreError, code="apikey_exists"):
    """An API key with this name already exists."""


class ApiKeyNotFound(UserStoreError, code="apikey_not_found"):
    """No API key with this name."""


class InvalidApiKeyData(UserStoreError, ValueError, code="invalid_apikey_data"):
    """An API key name or scope list is not acceptable."""


@dataclass(frozen=True)
class ApiKey:
    """A stored API key (its hash, never the key)."""

    name: str
    key_hash: str
    scopes: tuple[str, ...]
    created: int

    def public_json(self) -> dict[str, object]:
        """What ``wsmq apikey list`` shows: no hash."""
        return {"name": self.name, "scopes": list(self.scopes), "created": self.created}

    def to_doc(self) -> dict[str, object]:
        return {
            "_id": self.name,
            "keyHash": self.key_hash,
            "scopes": list(self.scopes),
            "created": self.created,
        }


def _from_doc(doc: dict[str, Any]) -> ApiKey | None:
    try:
        scopes = tuple(str(s) for s in doc.get("scopes") or ())
        return ApiKey(str(doc["_id"]), str(doc["keyHash"]), scopes, int(doc.get("created", 0)))
    except (KeyError, TypeError, ValueError):
        return None  # a hand-edited entry without a hash grants nothing


def new_api_key() -> str:
    """A new random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The stored form of ``key``: SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def validate_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidApiKeyData(f"an API key name must be {NAME_RULE}")
    return name


def validate_scopes(scopes: Iterable[str] | str) -> tuple[str, ...]:
    """Known scopes, deduplicated in :data:`SCOPES` order; a string is split on commas."""
    if isinstance(scopes, str):
        scopes = [s.strip() for s in scopes.split(",") if s.strip()]
    given = set(scopes)
    unknown = given - set(SCOPES)
    if unknown:
        raise InvalidApiKeyData(
            f"unknown scope(s) {', '.join(sorted(unknown))}: use {', '.join(SCOPES)}"
        )
    if not given:
        raise InvalidApiKeyData(f"give at least one scope of {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in given)


class ApiKeyStore(Protocol):
    """Where API keys live (beside the users)."""

    async def add(self, name: str, scopes: Iterable[str] | str) -> tuple[ApiKey, str]:
        """Add a key; returns it and the key itself (shown once). Raises ApiKeyExists."""
        ...

    async def revoke(self, name: str) -> None:
        """Delete the key (ApiKeyNotFound)."""
        ...

    async def list(self) -> list[ApiKey]:
        """Every key, sorted by name."""
        ...


def _new(name: str, scopes: Iterable[str] | str) -> tuple[ApiKey, str]:
    key = new_api_key()
    record = ApiKey(
        validate_name(name), hash_api_key(key), validate_scopes(scopes), int(time.time())
    )
    return record, key


class FileApiKeyStore:
    """API keys in the users file's ``"apikeys"`` section (same lock, same atomic writes)."""

    def __init__(self, users: FileUserStore) -> None:
        self.users = users

    def _docs(self, value: object) -> list[dict[str, Any]]:
        if not isinstance(value, list):
            return []
        return [d for d in value if isinstance(d, dict)]

    async def add(self, name: str, scopes: Iterable[str] | str) -> tuple[ApiKey, str]:
        record, key = _new(name, scopes)

        def change(value: object) -> tuple[object, None]:
            docs = self._docs(value)
            if any(d.get("_id") == record.name for d in docs):
                raise ApiKeyExists(f"API key {record.name!r} already exists")
            return [*docs, record.to_doc()], None

        await self.users.mutate_section(SECTION, change)
        return record, key

    async def revoke(self, name: str) -> None:
        def change(value: object) -> tuple[object, None]:
            docs = self._docs(value)
            kept = [d for d in docs if d.get("_id") != name]
            if len(kept) == len(docs):
                raise ApiKeyNotFound(f"no API key named {name!r}")
            return kept, None

        await self.users.mutate_section(SECTION, change)

    async def list(self) -> list[ApiKey]:
        keys = [_from_doc(d) for d in self._docs(self.users.section(SECTION))]
        return sorted((k for k in keys if k is not None), key=lambda k: k.name)


class MongoApiKeyStore:
    """API keys in the MongoDB collection ``apikeys`` of the users' database."""

    def __init__(self, database: Any) -> None:
        self.collection = database[COLLECTION]

    async def add(self, name: str, scopes: Iterable[str] | str) -> tuple[ApiKey, str]:
        from pymongo.errors import DuplicateKeyError

        from wsmq.auth.mongo_store import driver_errors

        record, key = _new(name, scopes)
        with driver_errors("insert_one"):
            try:
                await self.collection.insert_one(record.to_doc())
            except DuplicateKeyError:
                raise ApiKeyExists(f"API key {record.name!r} already exists") from None
        return record, key

    async def revoke(self, name: str) -> None:
        from wsmq.auth.mongo_store import driver_errors

        with driver_errors("delete_one"):
            result = await self.collection.delete_one({"_id": name})
        if result.deleted_count == 0:
            raise ApiKeyNotFound(f"no API key named {name!r}")

    async def list(self) -> list[ApiKey]:
        from wsmq.auth.mongo_store import driver_errors

        with driver_errors("find"):
            keys = [_from_doc(doc) async for doc in self.collection.find({})]
        return sorted((k for k in keys if k is not None), key=lambda k: k.name)


def api_key_store(users: UserStore) -> ApiKeyStore:
    """The API keys beside ``users`` (a users file or a MongoDB store)."""
    if isinstance(users, FileUserStore):
        return FileApiKeyStore(users)
    database = getattr(users, "database", None)
    if database is not None:  # MongoUserStore (not imported: it would load the MongoDB driver)
        return MongoApiKeyStore(database)
    raise UserStoreError(f"{type(users).__name__} does not store API keys")


#: Compared against when a key is unknown, so that a miss costs what a hit costs.
_DUMMY = hash_api_key("wsmq-unknown-key")


class ApiKeyIndex:
    """Presented keys checked against a copy of the store refreshed every ``refresh`` seconds.

    A revoked or added key takes effect within ``refresh`` seconds on every node. When the store
    fails, the last good copy is kept (and the failure re-raised only before any copy exists).
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[list[ApiKey]]],
        *,
        refresh: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self.refresh = refresh
        self._clock = clock
        self._by_hash: dict[str, ApiKey] | None = None
        self._loaded_at = 0.0
        # One load at a time, shared by every request that finds the copy stale: a burst of
        # requests (with any key, or none valid) costs one store read, not one each.
        self._loading: asyncio.Task[None] | None = None

    async def _reload(self) -> None:
        try:
            keys = await self._load()
        except Exception:
            if self._by_hash is None:
                raise
        else:
            self._by_hash = {k.key_hash: k for k in keys}
        self._loaded_at = self._clock()

    async def _current(self) -> dict[str, ApiKey]:
        if self._by_hash is None or self._clock() - self._loaded_at >= self.refresh:
            if self._loading is None:
                self._loading = asyncio.ensure_future(self._reload())
                self._loading.add_done_callback(self._loaded)
            # Shielded: a client giving up does not cancel the load the others wait for.
            await asyncio.shield(self._loading)
        assert self._by_hash is not None  # loaded above, or the load raised
        return self._by_hash

    def _loaded(self, task: asyncio.Task[None]) -> None:
        if self._loading is task:
            self._loading = None
        if not task.cancelled():
            task.exception()  # retrieved: the waiters got it; no "never retrieved" warning

    async def check(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None; the same work either way."""
        digest = hash_api_key(presented)
        found = (await self._current()).get(digest)
        expected = found.key_hash if found is not None else _DUMMY
        same = hmac.compare_digest(expected, digest)
        return found if found is not None and same else None

"""A user store in MongoDB (collection ``users``).

Takes any async database handle with motor's collection API: a motor database, PyMongo's
``AsyncMongoClient`` database or mongomock-motor's. Only ``find_one``, ``insert_one``,
``update_one``, ``find`` and ``create_index`` are used. ``_id`` values are ObjectIds (as the
original's documents); ids that are not 24-hex strings are looked up as plain strings.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import DuplicateKeyError, PyMongoError

from wsmq.auth.errors import UserExists, UserNotFound, UserStoreError
from wsmq.auth.passwords import PasswordHasher
from wsmq.auth.store_updates import FieldUpdates
from wsmq.auth.users import (
    User,
    UserDoc,
    new_user_id,
    user_from_doc,
)

COLLECTION = "users"
PING_TIMEOUT = 2.0  # readiness checks must answer fast, not after server selection (5 s)


@contextmanager
def driver_errors(what: str) -> Iterator[None]:
    """Raise the driver's errors (server selection, network, auth) as :class:`UserStoreError`:
    callers (the API: 503 ``unavailable``) handle the store's typed errors, not PyMongo's."""
    try:
        yield
    except PyMongoError as exc:
        raise UserStoreError(f"MongoDB {what} failed: {type(exc).__name__}: {exc}") from exc


def _id_query(user_id: str) -> dict[str, object]:
    try:
        return {"_id": {"$in": [ObjectId(user_id), user_id]}}
    except (InvalidId, TypeError):
        return {"_id": user_id}


class MongoUserStore(FieldUpdates):
    """:class:`~wsmq.auth.users.UserStore` over an async MongoDB database handle.

    Args:
        database: the async database (``client["wsmq"]``).
        hasher: scrypt parameters for new password hashes.
        client: a client this store owns and closes in :meth:`close`.
    """

    def __init__(
        self, database: Any, *, hasher: PasswordHasher | None = None, client: Any = None
    ) -> None:
        self.database = database
        self.collection = database[COLLECTION]
        self.hasher = hasher or PasswordHasher()
        self._client = client
        self._indexed = False
        self.ping_timeout = PING_TIMEOUT

    async def _ensure_index(self) -> None:
        if not self._indexed:
            with driver_errors("create_index"):
                await self.collection.create_index("userName", unique=True)
            self._indexed = True

    async def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        if not isinstance(user_id, str) or not user_id:
            return None
        with driver_errors("find_one"):
            doc = await self.collection.find_one(_id_query(user_id))
        return None if doc is None else user_from_doc(doc)

    async def get_by_name(self, user_name: str) -> User | None:
        """The user with this name, or None."""
        if not isinstance(user_name, str) or not user_name:
            return None
        with driver_errors("find_one"):
            doc = await self.collection.find_one({"userName": user_name})
        return None if doc is None else user_from_doc(doc)

    async def list(self) -> list[User]:
        """All users, sorted by name."""
        with driver_errors("find"):
            users = [user_from_doc(doc) async for doc in self.collection.find({})]
        return sorted(users, key=lambda u: u.user_name)

    async def ping(self) -> bool:
        """True when the collection answers a query within :attr:`ping_timeout` seconds."""
        try:
            async with asyncio.timeout(self.ping_timeout):
                await self.collection.find_one({"_id": "__wsmq_ping__"})
        except Exception:  # TimeoutError, server selection, auth: all mean "not ready"
            return False
        return True

    async def create(
        self,
        user_name: str,
        password: str,
        queues: Iterable[str] = (),
        publish: Iterable[str] = (),
    ) -> tuple[User, str]:
        """Add a user; returns it and its first access token. Raises UserExists."""
        user_id = ObjectId(new_user_id())
        doc, token = await self._new_user(
            user_id, user_name, password, queues, publish, before_hash=self._ensure_index
        )
        with driver_errors("insert_one"):
            try:
                await self.collection.insert_one(doc)
            except DuplicateKeyError:
                raise UserExists(f"user {doc['userName']!r} already exists") from None
        return user_from_doc(doc), token

    async def _update(self, user_id: str, fields: UserDoc) -> None:
        # Every write retires a plaintext tokens2 access token.
        update = {"$set": fields, "$unset": {"accessToken": ""}}
        with driver_errors("update_one"):
            result = await self.collection.update_one(_id_query(user_id), update)
        if result.matched_count == 0:
            raise UserNotFound(f"no user with id {user_id!r}")

    async def close(self) -> None:
        """Close the client when this store opened it."""
        client, self._client = self._client, None
        if client is not None:
            result = client.close()  # motor: sync; PyMongo async: coroutine
            if inspect.isawaitable(result):
                await result


def open_mongo_store(
    mongo_url: str,
    database: str | None = None,
    *,
    driver: str = "pymongo",
    hasher: PasswordHasher | None = None,
) -> MongoUserStore:
    """Open a client for ``mongo_url`` (PyMongo ``AsyncMongoClient``, or ``driver="motor"``).

    The database is ``database``, else the URL's, else ``wsmq``.
    """
    client: Any
    # A default that fails fast when MongoDB is down; the URL's own option wins if it has one.
    options: dict[str, Any] = {"serverSelectionTimeoutMS": 5000}
    if "serverselectiontimeoutms" in mongo_url.lower():
        options = {}
    if driver == "pymongo":
        from pymongo import AsyncMongoClient

        client = AsyncMongoClient(mongo_url, **options)
    elif driver == "motor":
        from motor.motor_asyncio import AsyncIOMotorClient

        client = AsyncIOMotorClient(mongo_url, **options)
    else:
        raise UserStoreError(f"unknown MongoDB driver {driver!r} (pymongo or motor)")
    db = client[database] if database else client.get_default_database(default="wsmq")
    return MongoUserStore(db, hasher=hasher, client=client)

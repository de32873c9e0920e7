"""Authentication: x-token JWTs, access tokens, user stores, HTTP endpoints, revocation.

See ``docs/auth.md``. The public API::

    cfg = AuthConfig(secret="...")
    store = open_user_store(users_file="users.json")      # or mongo_url=... / database=...
    auth = Authenticator(cfg, store)
    user = await auth.verify(x_token, x_access_token)     # AuthenticatedUser or AuthError
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from wsmq._lazy import load_lazy
from wsmq.auth.authenticator import (
    AuthenticatedUser,
    Authenticator,
    issue_tokens,
    verify_tokens,
)
from wsmq.auth.config import AuthConfig
from wsmq.auth.errors import AuthError, InvalidUserData, UserExists, UserNotFound, UserStoreError
from wsmq.auth.file_store import FileUserStore
from wsmq.auth.passwords import PasswordHasher, verify_password
from wsmq.auth.tokens import (
    IssuedTokens,
    TokenClaims,
    hash_access_token,
    issue_jwt,
    new_access_token,
    verify_jwt,
)
from wsmq.auth.users import User, UserStore

if TYPE_CHECKING:
    from wsmq.auth.mongo_store import MongoUserStore
    from wsmq.auth.revocation import RevocationBus
    from wsmq.auth.routes import add_auth_routes

# Imported on first use: a publisher or the users-file CLI should not pay for aiohttp, redis
# and the MongoDB drivers.
_LAZY = {
    "MongoUserStore": "wsmq.auth.mongo_store",
    "RevocationBus": "wsmq.auth.revocation",
    "add_auth_routes": "wsmq.auth.routes",
}

__all__ = [
    "AuthConfig",
    "AuthError",
    "AuthenticatedUser",
    "Authenticator",
    "FileUserStore",
    "InvalidUserData",
    "IssuedTokens",
    "MongoUserStore",
    "PasswordHasher",
    "RevocationBus",
    "TokenClaims",
    "User",
    "UserExists",
    "UserNotFound",
    "UserStore",
    "UserStoreError",
    "add_auth_routes",
    "hash_access_token",
    "issue_jwt",
    "issue_tokens",
    "new_access_token",
    "open_user_store",
    "verify_jwt",
    "verify_password",
    "verify_tokens",
]


def open_user_store(
    mongo_url: str | None = None,
    users_file: str | os.PathLike[str] | None = None,
    database: Any = None,
    *,
    driver: str = "pymongo",
    password_hasher: PasswordHasher | None = None,
) -> UserStore:
    """Open the user store: MongoDB when ``mongo_url`` or a database handle is given, else the
    users file.

    Args:
        mongo_url: ``mongodb://...``: opens PyMongo's ``AsyncMongoClient`` (``driver="motor"``
            for motor). ``database`` may then be the database name.
        users_file: a JSON users file (created on the first write).
        database: an async database handle (motor, PyMongo async, mongomock-motor).
        password_hasher: scrypt cost for new password hashes.
    """
    if mongo_url and users_file is not None:
        # The gateway's documented rule: the users file serves when no MongoDB URL is set.
        logging.getLogger("wsmq.auth").warning("both a MongoDB URL and a users file: using MongoDB")
    if users_file is not None and not mongo_url:
        if database is not None and not isinstance(database, str):
            raise UserStoreError("give either a users file or a MongoDB database, not both")
        return FileUserStore(users_file, hasher=password_hasher)
    if mongo_url:
        from wsmq.auth.mongo_store import open_mongo_store

        name = database if isinstance(database, str) else None
        return open_mongo_store(mongo_url, name, driver=driver, hasher=password_hasher)
    if database is not None and not isinstance(database, str):
        from wsmq.auth.mongo_store import MongoUserStore

        return MongoUserStore(database, hasher=password_hasher)
    raise UserStoreError("no user store configured: give --mongo-url or --users-file")


def __getattr__(name: str) -> Any:
    return load_lazy(__name__, _LAZY, globals(), name)

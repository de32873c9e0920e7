"""A user store in one JSON file, shared by the CLI and any number of nodes on one machine.

The file is loaded into memory and re-read whenever its inode, size or mtime changes (and, because
filesystem timestamps are coarse, whenever it changed less than two seconds ago). Every write
takes an exclusive ``flock`` on ``<file>.lock``, re-reads the current file, applies the change,
writes a temporary file in the same directory and ``os.replace``-s it in: readers never see a
half-written file and concurrent writers never lose each other's changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from wsmq.auth.errors import UserExists, UserNotFound, UserStoreError
from wsmq.auth.passwords import PasswordHasher
from wsmq.auth.store_updates import FieldUpdates
from wsmq.auth.users import (
    User,
    UserDoc,
    new_user_id,
    user_from_doc,
)

log = logging.getLogger("wsmq.auth")
FORMAT_VERSION = 1
_RECENT = 2.0  # seconds: a file changed this recently is re-read even if stat looks the same

Docs = dict[str, UserDoc]
Sections = dict[str, object]
T = TypeVar("T")


class FileUserStore(FieldUpdates):
    """:class:`~wsmq.auth.users.UserStore` backed by a JSON file (created on first write)."""

    def __init__(self, path: str | os.PathLike[str], *, hasher: PasswordHasher | None = None):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.hasher = hasher or PasswordHasher()
        self._docs: Docs = {}
        # Top-level sections other than "users" (the API keys: wsmq.auth.apikeys), kept as read
        # and written back unchanged by user writes.
        self._sections: Sections = {}
        self._signature: tuple[int, int, int] | None = None
        self._raw: bytes | None = None
        # Users built from the current docs (User is frozen): a handshake costs a dict lookup,
        # not a rebuild. Every change of the file gives a new docs dict, which empties it.
        self._users: dict[str, User] = {}
        self._users_of: Docs | None = None
        self._thread_lock = threading.Lock()
        self._refresh(strict=True)

    # -- reading ---------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refresh(self, *, strict: bool = False) -> Docs:
        sig = self._stat()
        if sig is None:
            self._docs, self._sections, self._signature, self._raw = {}, {}, None, None
            return self._docs
        recent = time.time() - sig[2] / 1e9 < _RECENT
        if sig == self._signature and not recent:
            return self._docs
        try:
            raw = self.path.read_bytes()
            if raw != self._raw:
                self._docs, self._sections = _parse(raw, self.path)
                self._raw = raw
            self._signature = sig
        except FileNotFoundError:
            self._docs, self._sections, self._signature, self._raw = {}, {}, None, None
        except UserStoreError:
            if strict:
                raise
            # A hand-edited broken file must not lock every user out: keep the last good copy.
            log.error("users file %s is not valid JSON; keeping the last good copy", self.path)
        return self._docs

    async def get(self, user_id: str) -> User | None:
        """The user with this id, or None."""
        docs = self._refresh()
        if docs is not self._users_of:
            self._users, self._users_of = {}, docs
        user = self._users.get(user_id)
        if user is None:
            doc = docs.get(user_id)
            if doc is None:
                return None
            user = self._users[user_id] = user_from_doc(doc)
        return user

    async def get_by_name(self, user_name: str) -> User | None:
        """The user with this name, or None."""
        for doc in self._refresh().values():
            if doc.get("userName") == user_name:
                return user_from_doc(doc)
        return None

    async def list(self) -> list[User]:
        """All users, sorted by name."""
        users = [user_from_doc(d) for d in self._refresh().values()]
        return sorted(users, key=lambda u: u.user_name)

    async def ping(self) -> bool:
        """True when the file (or its directory, before the first user) is readable."""
        target = self.path if self.path.exists() else self.path.parent
        return os.access(target, os.R_OK)

    async def close(self) -> None:
        """Nothing to release."""

    # -- writing ---------------------------------------------------------------------------

    def section(self, name: str) -> object:
        """A top-level section of the file other than ``users`` (None when absent), as last
        read; re-read when the file changed."""
        self._refresh()
        return self._sections.get(name)

    async def mutate_section(self, name: str, change: Callable[[object], tuple[object, T]]) -> T:
        """Replace section ``name`` under the file lock: ``change(current)`` returns the new
        value and the result to return. Users are written back unchanged."""

        def run() -> T:
            with self._locked():
                value, result = change(self._sections.get(name))
                self._sections = {**self._sections, name: value}
                return result

        return await asyncio.to_thread(run)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Docs]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._signature = None  # force a full re-read under the lock
                self._raw = None
                docs = {k: dict(v) for k, v in self._refresh(strict=True).items()}
                yield docs
                self._write(docs)
            finally:
                os.close(fd)  # closing releases the flock

    def _write(self, docs: Docs) -> None:
        body = {**self._sections, "version": FORMAT_VERSION, "users": list(docs.values())}
        raw = (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o600)  # password hashes inside
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._docs, self._raw, self._signature = docs, raw, self._stat()

    async def _mutate(self, change: Callable[[Docs], T]) -> T:
        def run() -> T:
            with self._locked() as docs:
                return change(docs)

        return await asyncio.to_thread(run)

    async def create(
        self,
        user_name: str,
        password: str,
        queues: Iterable[str] = (),
        publish: Iterable[str] = (),
    ) -> tuple[User, str]:
        """Add a user; returns it and its first access token. Raises UserExists."""
        user_id = new_user_id()
        doc, token = await self._new_user(user_id, user_name, password, queues, publish)
        name = doc["userName"]

        def change(docs: Docs) -> None:
            if any(d.get("userName") == name for d in docs.values()):
                raise UserExists(f"user {name!r} already exists")
            docs[user_id] = doc

        await self._mutate(change)
        return user_from_doc(doc), token

    async def _update(self, user_id: str, fields: UserDoc) -> None:
        def change(docs: Docs) -> None:
            doc = docs.get(user_id)
            if doc is None:
                raise UserNotFound(f"no user with id {user_id!r}")
            doc.update(fields)
            doc.pop("accessToken", None)  # any write retires a plaintext tokens2 token

        await self._mutate(change)


def _parse(raw: bytes, path: Path) -> tuple[Docs, Sections]:
    try:
        body = json.loads(raw) if raw.strip() else {"users": []}
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserStoreError(f"users file {path} is not valid JSON: {exc}") from None
    users = body.get("users") if isinstance(body, dict) else None
    if not isinstance(users, list):
        raise UserStoreError(f"users file {path} has no 'users' list")
    docs: Docs = {}
    for doc in users:
        if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str):
            raise UserStoreError(f"users file {path} has an entry without a string _id")
        docs[doc["_id"]] = doc
    sections = {k: v for k, v in body.items() if k not in ("version", "users")}
    return docs, sections

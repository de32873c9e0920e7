"""Write operations that every user store shares, built on one ``_update(user_id, fields)``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from wsmq.auth.passwords import PasswordHasher
from wsmq.auth.tokens import hash_access_token, new_access_token
from wsmq.auth.users import UserDoc, validate_queue_names, validate_user_name


class FieldUpdates:
    """Mixin: token, password and disable operations in terms of the store's ``_update``.

    A store provides ``hasher`` and ``_update``, which sets the given document fields (and
    retires a plaintext tokens2 ``accessToken``) or raises ``UserNotFound``.
    """

    hasher: PasswordHasher

    async def _update(self, user_id: str, fields: UserDoc) -> None:
        raise NotImplementedError

    async def _new_user(
        self,
        user_id: object,
        user_name: str,
        password: str,
        queues: Iterable[str],
        publish: Iterable[str],
        *,
        before_hash: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[UserDoc, str]:
        """Validate a new user's fields (raises ``InvalidUserData``); its document and first
        access token. ``before_hash`` runs after validation, before the (slow) password hash."""
        name = validate_user_name(user_name)
        qs, pubs = validate_queue_names(queues), validate_queue_names(publish, "publish")
        if before_hash is not None:
            await before_hash()
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        token = new_access_token()
        doc: UserDoc = {
            "_id": user_id,
            "userName": name,
            "passwordHash": password_hash,
            "accessTokenHash": hash_access_token(token),
            "queues": list(qs),
            "publish": list(pubs),
            "disabled": False,
        }
        return doc, token

    async def set_access_token(self, user_id: str) -> str:
        """Replace the access token; returns the new one."""
        token = new_access_token()
        await self._update(user_id, {"accessTokenHash": hash_access_token(token)})
        return token

    async def clear_access_token(self, user_id: str) -> None:
        """Revoke the access token."""
        await self._update(user_id, {"accessTokenHash": None})

    async def set_password(self, user_id: str, password: str) -> None:
        """Change the password and revoke the access token."""
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        await self._update(user_id, {"passwordHash": password_hash, "accessTokenHash": None})

    async def set_disabled(self, user_id: str, disabled: bool = True) -> None:
        """Disable (revoking the access token) or re-enable a user."""
        fields: UserDoc = {"disabled": bool(disabled)}
        if disabled:
            fields["accessTokenHash"] = None
        await self._update(user_id, fields)

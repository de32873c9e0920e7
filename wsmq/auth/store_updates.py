"""Write operations that every user store shares, built on one ``_update(user_id, fields)``."""

from __future__ import annotations

import asyncio

from wsmq.auth.passwords import PasswordHasher
from wsmq.auth.tokens import hash_access_token, new_access_token
from wsmq.auth.users import UserDoc


class FieldUpdates:
    """Mixin: token, password and disable operations in terms of the store's ``_update``.

    A store provides ``hasher`` and ``_update``, which sets the given document fields (and
    retires a plaintext tokens2 ``accessToken``) or raises ``UserNotFound``.
    """

    hasher: PasswordHasher

    async def _update(self, user_id: str, fields: UserDoc) -> None:
        raise NotImplementedError

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

"""``ask_authorize_hook``: a sync or async ``authorize`` hook answering the session's
``DoAuthorize`` (the session's side: tests/protocol/test_session.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wsmq.gateway import connection
from wsmq.gateway.app import HookUser
from wsmq.gateway.connection import ask_authorize_hook
from wsmq.protocol import wire as p
from wsmq.protocol.access import AuthorizeHook
from wsmq.protocol.actions import Action, DoAuthorize, DoSubscribe, Reply
from wsmq.protocol.session import Session

ALICE = HookUser("alice")


def _session(user: Any = ALICE) -> Session:
    return Session(p.Mode.V1, now=0.0, user=user, authorize_hook=True)


async def _answered(hook: AuthorizeHook, session: Session, actions: list[Action]) -> list[Action]:
    """Execute the session's questions as the connection does."""
    while actions and isinstance(actions[-1], DoAuthorize):
        ask = actions[-1]
        actions = actions[:-1] + session.authorized(ask, await ask_authorize_hook(hook, ask))
    return actions


async def _frame(hook: AuthorizeHook, session: Session, text: str) -> list[Action]:
    return await _answered(hook, session, session.receive(text, 1.0))


def _forbidden(actions: list[Action]) -> bool:
    return any(isinstance(a, Reply) and a.error == "forbidden" for a in actions)


async def _async_hook(user: Any, qname: str, action: str) -> bool:
    await asyncio.sleep(0)
    return qname.startswith("ok")


def _sync_hook(user: Any, qname: str, action: str) -> bool:
    return qname.startswith("ok")


def _sync_returning_coroutine(user: Any, qname: str, action: str) -> Any:
    return _async_hook(user, qname, action)  # e.g. a lambda around an async function


@pytest.mark.parametrize("hook", [_async_hook, _sync_hook, _sync_returning_coroutine])
async def test_hook_decides_each_frame(hook: AuthorizeHook) -> None:
    session = _session()
    assert not _forbidden(await _frame(hook, session, "/subscribe/ok-1"))
    assert _forbidden(await _frame(hook, session, "/subscribe/no-1"))
    assert not _forbidden(await _frame(hook, session, "/send/ok-2 hi"))
    assert _forbidden(await _frame(hook, session, "/send/no-2 hi"))


async def test_failing_or_slow_hook_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "AUTHORIZE_TIMEOUT", 0.05)

    def raises(user: Any, qname: str, action: str) -> bool:
        raise RuntimeError("bug")

    async def hangs(user: Any, qname: str, action: str) -> bool:
        await asyncio.Event().wait()
        return True

    for hook in (raises, hangs):
        assert _forbidden(await _frame(hook, _session(), "/subscribe/ok"))


async def test_frames_held_during_auth_are_decided_for_the_authenticated_user() -> None:
    seen: list[str] = []

    async def hook(user: Any, qname: str, action: str) -> bool:
        seen.append(user.user_id)
        return qname == "ok"

    session = _session(user=None)
    assert session.receive("/auth t a", 0.5)  # -> DoAuthenticate; the session is AUTHENTICATING
    assert await _frame(hook, session, "/subscribe/ok") == []
    assert await _frame(hook, session, "/subscribe/no") == []
    actions = await _answered(hook, session, session.authenticated(ALICE, 1.0))
    assert seen == ["alice", "alice"]
    assert DoSubscribe("ok") in actions
    assert _forbidden(actions)

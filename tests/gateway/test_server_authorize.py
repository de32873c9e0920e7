"""``HookDecisions``: a sync or async ``authorize`` hook in front of the pure session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wsmq.gateway import authorize
from wsmq.gateway.app import HookUser
from wsmq.gateway.authorize import HookDecisions
from wsmq.protocol import wire as p
from wsmq.protocol.actions import DoSubscribe, Reply
from wsmq.protocol.session import Session

ALICE = HookUser("alice")


def _session(decisions: HookDecisions, user: Any = ALICE) -> Session:
    return Session(p.Mode.V1, now=0.0, user=user, authorize=decisions.lookup)


async def _frame(decisions: HookDecisions, session: Session, text: str) -> list[Any]:
    command = p.parse_frame(text)
    await decisions.before(session, command)
    actions = session.handle(command, 1.0)
    decisions.clear()
    return actions


def _forbidden(actions: list[Any]) -> bool:
    return any(isinstance(a, Reply) and a.error == "forbidden" for a in actions)


async def _async_hook(user: Any, qname: str, action: str) -> bool:
    await asyncio.sleep(0)
    return qname.startswith("ok")


def _sync_hook(user: Any, qname: str, action: str) -> bool:
    return qname.startswith("ok")


def _sync_returning_coroutine(user: Any, qname: str, action: str) -> Any:
    return _async_hook(user, qname, action)  # e.g. a lambda around an async function


@pytest.mark.parametrize("hook", [_async_hook, _sync_hook, _sync_returning_coroutine])
async def test_hook_decides_each_frame(hook: Any) -> None:
    decisions = HookDecisions(hook)
    session = _session(decisions)
    assert not _forbidden(await _frame(decisions, session, "/subscribe/ok-1"))
    assert _forbidden(await _frame(decisions, session, "/subscribe/no-1"))
    assert not _forbidden(await _frame(decisions, session, "/send/ok-2 hi"))
    assert _forbidden(await _frame(decisions, session, "/send/no-2 hi"))
    # A decision is for one frame: nothing is left to allow a later frame by accident.
    assert not decisions.lookup(ALICE, "ok-1", "subscribe")


async def test_failing_or_slow_hook_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(authorize, "AUTHORIZE_TIMEOUT", 0.05)

    def raises(user: Any, qname: str, action: str) -> bool:
        raise RuntimeError("bug")

    async def hangs(user: Any, qname: str, action: str) -> bool:
        await asyncio.Event().wait()
        return True

    for hook in (raises, hangs):
        decisions = HookDecisions(hook)
        assert _forbidden(await _frame(decisions, _session(decisions), "/subscribe/ok"))


async def test_frames_held_during_auth_are_decided_for_the_authenticated_user() -> None:
    seen: list[str] = []

    async def hook(user: Any, qname: str, action: str) -> bool:
        seen.append(user.user_id)
        return qname == "ok"

    decisions = HookDecisions(hook)
    session = _session(decisions, user=None)
    assert session.receive("/auth t a", 0.5)  # -> DoAuthenticate; the session is AUTHENTICATING
    assert await _frame(decisions, session, "/subscribe/ok") == []
    assert await _frame(decisions, session, "/subscribe/no") == []
    await decisions.before_authenticated(ALICE)
    actions = session.authenticated(ALICE, 1.0)
    assert seen == ["alice", "alice"]
    assert DoSubscribe("ok") in actions
    assert _forbidden(actions)

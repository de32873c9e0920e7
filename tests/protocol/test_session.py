"""wsmq.protocol.session: the per-connection state machine, driven with an explicit clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wsmq.protocol import server_frames as sf
from wsmq.protocol import wire as p
from wsmq.protocol.access import default_authorize
from wsmq.protocol.actions import (
    Action,
    Close,
    DoAck,
    DoAuthenticate,
    DoAuthorize,
    DoExtend,
    DoNack,
    DoRefresh,
    DoSend,
    DoSubscribe,
    DoUnsubscribe,
    Reply,
)
from wsmq.protocol.session import Session, SessionLimits, State
from wsmq.protocol.wire import Mode

T0 = 1_700_000_000.0
MSG_ID = "lq3x0v1a2bCDEFghijklmnopqrstuvwx"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2Vycy91MSJ9.c2ln"
ACCESS = "f" * 64


@dataclass(frozen=True)
class FakeUser:
    """Shaped like wsmq.auth.AuthenticatedUser."""

    user_id: str = "u1"
    user_name: str = "alice"
    queues: tuple[str, ...] = ("shared",)
    publish: tuple[str, ...] = ("outbox",)
    token_exp: float | None = T0 + 900


USER = FakeUser()
NO_RATE = SessionLimits(rate=None)


def frames(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(a.text) for a in actions if isinstance(a, Reply)]


def only_error(actions: list[Action]) -> dict[str, Any]:
    assert len(actions) == 1 and isinstance(actions[0], Reply), actions
    assert actions[0].error is not None
    body: dict[str, Any] = json.loads(actions[0].text)
    assert body["type"] == "error" and body["code"] == actions[0].error
    return body


def state_of(session: Session) -> State:
    # A call, so mypy does not narrow session.state across the actions that change it.
    return session.state


def open_session(mode: Mode = Mode.V1, **kw: Any) -> Session:
    kw.setdefault("limits", NO_RATE)
    kw.setdefault("user", USER)
    return Session(mode, now=T0, **kw)


def asked(actions: list[Action]) -> DoAuthorize:
    assert len(actions) == 1 and isinstance(actions[0], DoAuthorize), actions
    return actions[0]


def subscribed(session: Session, qname: str) -> None:
    assert session.receive(f"/subscribe/{qname}", T0) == [DoSubscribe(qname)]
    session.subscribe_done(qname)


# --- authentication ------------------------------------------------------------------------


def test_header_auth_session_is_open_at_once() -> None:
    s = open_session()
    assert s.state is State.OPEN and s.user_id == "u1" and s.token_exp == T0 + 900
    assert s.auth_deadline is None
    assert s.receive("/subscribe/u1", T0) == [DoSubscribe("u1")]
    assert frames(s.subscribe_done("u1")) == [{"type": "subscribed", "queue": "u1"}]
    assert s.subscriptions == {"u1"}


def test_first_message_auth_success_replays_pipelined_frames() -> None:
    s = Session(Mode.V1, now=T0, limits=NO_RATE)
    assert s.state is State.AWAITING_AUTH and s.user_id is None
    assert s.next_deadline() == T0 + 5.0
    assert s.receive(f"/auth {JWT} {ACCESS}", T0 + 1) == [DoAuthenticate(JWT, ACCESS)]
    assert state_of(s) is State.AUTHENTICATING
    # A browser sends /subscribe right after /auth without waiting: buffered, not rejected.
    assert s.receive("/subscribe/u1", T0 + 1) == []
    assert s.receive("/bogus", T0 + 1) == []
    actions = s.authenticated(USER, T0 + 2)
    assert actions[0] == Reply(sf.encode_authenticated("u1", T0 + 900))
    assert actions[1] == DoSubscribe("u1")
    assert only_error(actions[2:])["code"] == "unknown_command"
    assert len(actions) == 3 and state_of(s) is State.OPEN and s.next_deadline() == T0 + 840


def test_first_message_auth_in_legacy_mode_sends_no_success_frames() -> None:
    s = Session(Mode.LEGACY, now=T0, limits=NO_RATE)
    s.receive(f"/auth {JWT} {ACCESS}", T0)
    assert s.authenticated(USER, T0) == []
    assert s.receive("/subscribe/u1", T0) == [DoSubscribe("u1")]
    assert s.subscribe_done("u1") == []


def test_auth_failure_closes_4401() -> None:
    s = Session(Mode.V1, now=T0)
    s.receive(f"/auth {JWT} {ACCESS}", T0)
    assert s.auth_failed("token expired") == [Close(4401, "token expired")]
    assert s.closed and s.receive("/subscribe/u1", T0) == [] and s.tick(T0 + 99) == []
    assert s.authenticated(USER, T0) == []


def test_auth_deadline_closes_4408() -> None:
    s = Session(Mode.V1, now=T0, limits=SessionLimits(auth_timeout=5))
    assert s.tick(T0 + 4.9) == []
    assert s.tick(T0 + 5) == [Close(4408, "authentication timeout")]
    assert s.closed and s.next_deadline() is None


def test_auth_deadline_applies_while_verifying() -> None:
    s = Session(Mode.V1, now=T0)
    s.receive(f"/auth {JWT} {ACCESS}", T0 + 1)
    assert s.tick(T0 + 6) == [Close(4408, "authentication timeout")]
    assert s.authenticated(USER, T0 + 7) == []  # a late result is ignored


def test_unauthenticated_command_closes_4401() -> None:
    for frame in ("/subscribe/u1", "/refresh x", "garbage", b"\x00"):
        s = Session(Mode.V1, now=T0)
        assert s.receive(frame, T0) == [Close(4401, "authentication required")]


def test_too_many_frames_while_authenticating_closes() -> None:
    s = Session(Mode.V1, now=T0, limits=SessionLimits(max_pending=2, rate=None))
    s.receive(f"/auth {JWT} {ACCESS}", T0)
    assert s.receive("/subscribe/a", T0) == []
    assert s.receive("/subscribe/b", T0) == []
    assert s.receive("/subscribe/c", T0) == [
        Close(p.CLOSE_POLICY, "too many frames before authentication")
    ]


def test_second_auth_is_an_error_not_a_close() -> None:
    s = open_session()
    assert only_error(s.receive(f"/auth {JWT} {ACCESS}", T0))["code"] == "already_authenticated"
    assert not s.closed


# --- authorization and subscriptions -------------------------------------------------------


def test_default_authorize_own_queue_rule() -> None:
    assert default_authorize(USER, "u1", "subscribe")
    assert default_authorize(USER, "shared", "subscribe")
    assert not default_authorize(USER, "outbox", "subscribe")
    assert not default_authorize(USER, "u2", "subscribe")
    assert default_authorize(USER, "outbox", "send")
    assert not default_authorize(USER, "u1", "send")
    assert not default_authorize(USER, "u1", "delete")


def test_forbidden_subscribe_stays_open() -> None:
    s = open_session(Mode.LEGACY)
    err = only_error(s.receive("/subscribe/u2", T0))
    assert err == {
        "type": "error",
        "code": "forbidden",
        "detail": "not allowed to subscribe to u2",
        "queue": "u2",
    }
    assert "message" not in err  # legacy clients read .message
    assert not s.closed and s.subscriptions == frozenset()


def test_authorize_hook_is_asked_through_an_action() -> None:
    # With a hook the session asks (DoAuthorize) and goes on with the answer; the hook's
    # execution (sync or async, failing, slow) is tests/gateway/test_server_authorize.py's.
    s = open_session(authorize_hook=True)
    ask = asked(s.receive("/subscribe/anything", T0))
    assert ask == DoAuthorize(USER, "anything", "subscribe", p.Subscribe("anything"))
    assert s.authorized(ask, True) == [DoSubscribe("anything")]
    ask = asked(s.receive("/subscribe/u1", T0))  # the hook replaces the own-id rule
    assert only_error(s.authorized(ask, False))["code"] == "forbidden"
    ask = asked(s.receive("/send/x hi", T0))
    assert ask == DoAuthorize(USER, "x", "send", p.Send("x", "hi"))
    assert s.authorized(ask, True) == [DoSend("x", "hi")]
    # An answer is for one frame: the next one asks again.
    assert asked(s.receive("/send/x hi", T0)) == ask
    ask = asked(s.receive("/send/outbox hi", T0))
    err = only_error(s.authorized(ask, False))
    assert err["code"] == "forbidden" and err["detail"] == "not allowed to send to outbox"
    s.subscribe_done("anything")
    # Already subscribed: answered without asking the hook.
    assert s.receive("/subscribe/anything", T0) == [Reply(sf.encode_subscribed("anything"))]
    assert not s.closed
    # The limit applies after the hook allowed, as without a hook.
    s = open_session(authorize_hook=True, limits=SessionLimits(max_subscriptions=1, rate=None))
    subscribed_after_hook = s.authorized(asked(s.receive("/subscribe/a", T0)), True)
    assert subscribed_after_hook == [DoSubscribe("a")]
    ask = asked(s.receive("/subscribe/b", T0))
    assert only_error(s.authorized(ask, True))["code"] == "too_many_subscriptions"
    # An answer that comes after the close is ignored.
    ask = asked(s.receive("/subscribe/c", T0))
    s.revoked()
    assert s.authorized(ask, True) == []


def test_frames_held_during_auth_are_authorized_one_at_a_time_in_order() -> None:
    s = Session(Mode.V1, now=T0, limits=NO_RATE, authorize_hook=True)
    s.receive(f"/auth {JWT} {ACCESS}", T0)
    for frame in ("/subscribe/ok", "/subscribe/ok", "/subscribe/no", "/unsubscribe/no"):
        assert s.receive(frame, T0) == []
    actions = s.authenticated(USER, T0)
    assert actions[:-1] == [Reply(sf.encode_authenticated("u1", T0 + 900))]
    ask = actions[-1]  # the later frames wait behind the hook's answer
    assert ask == DoAuthorize(USER, "ok", "subscribe", p.Subscribe("ok"))
    # A frame read meanwhile waits behind them too.
    assert s.receive("/send/outbox hi", T0) == []
    # The duplicate subscribe is answered by the first one; the next frame asks the hook.
    assert s.authorized(ask, True) == [
        DoSubscribe("ok"),
        DoAuthorize(USER, "no", "subscribe", p.Subscribe("no")),
    ]
    actions = s.authorized(DoAuthorize(USER, "no", "subscribe", p.Subscribe("no")), False)
    assert [f.get("code", f["type"]) for f in frames(actions)] == ["forbidden", "unsubscribed"]
    assert actions[-1] == DoAuthorize(USER, "outbox", "send", p.Send("outbox", "hi"))
    assert s.authorized(actions[-1], True) == [DoSend("outbox", "hi")]
    assert s.receive("/subscribe/u1", T0)[0] == DoAuthorize(
        USER, "u1", "subscribe", p.Subscribe("u1")
    )


def test_duplicate_subscribe_is_idempotent() -> None:
    s = open_session()
    assert s.receive("/subscribe/u1", T0) == [DoSubscribe("u1")]
    assert s.receive("/subscribe/u1", T0) == []  # still pending: the pending reply answers
    s.subscribe_done("u1")
    assert s.receive("/subscribe/u1", T0) == [Reply(sf.encode_subscribed("u1"))]
    assert s.subscriptions == {"u1"}


def test_subscribe_failure_is_reported_and_forgotten() -> None:
    s = open_session()
    s.receive("/subscribe/u1", T0)
    err = only_error(s.subscribe_failed("u1", "unavailable", "redis unreachable"))
    assert err["code"] == "unavailable" and err["queue"] == "u1"
    assert s.subscriptions == frozenset()
    assert s.subscribe_done("u1") == []  # stale result ignored


def test_max_subscriptions() -> None:
    limits = SessionLimits(max_subscriptions=2, rate=None)
    s = open_session(limits=limits, user=replace(USER, queues=("a", "b", "c")))
    subscribed(s, "a")
    assert s.receive("/subscribe/b", T0) == [DoSubscribe("b")]  # pending counts too
    err = only_error(s.receive("/subscribe/c", T0))
    assert err["code"] == "too_many_subscriptions" and not s.closed
    s.receive("/unsubscribe/a", T0)
    assert s.receive("/subscribe/c", T0) == [DoSubscribe("c")]


def test_unsubscribe() -> None:
    s = open_session()
    subscribed(s, "u1")
    assert s.receive("/unsubscribe/u1", T0) == [
        DoUnsubscribe("u1"),
        Reply(sf.encode_unsubscribed("u1")),
    ]
    assert s.subscriptions == frozenset()
    # Not subscribed: nothing to undo, same reply.
    assert s.receive("/unsubscribe/u1", T0) == [Reply(sf.encode_unsubscribed("u1"))]
    legacy = open_session(Mode.LEGACY)
    legacy.receive("/subscribe/u1", T0)
    assert legacy.receive("/unsubscribe/u1", T0) == [DoUnsubscribe("u1")]


# --- ack and send --------------------------------------------------------------------------


def test_ack_v1() -> None:
    s = open_session()
    assert only_error(s.receive(f"/ack/u1/{MSG_ID}", T0))["code"] == "not_subscribed"
    subscribed(s, "u1")
    assert s.receive(f"/ack/u1/{MSG_ID}", T0) == [DoAck("u1", (MSG_ID,))]
    assert s.acks_done("u1", [MSG_ID], [True]) == [Reply(sf.encode_acked("u1", MSG_ID))]
    err = only_error(s.acks_done("u1", [MSG_ID], [False]))
    assert err["code"] == "unknown_message" and err["id"] == MSG_ID
    assert only_error(s.acks_failed("u1", [MSG_ID], "unavailable", "x"))["code"] == "unavailable"
    # Several ids: each answered on its own, in order.
    other = "b" * 32
    acked, unknown = s.acks_done("u1", [MSG_ID, other], [True, False])
    assert acked == Reply(sf.encode_acked("u1", MSG_ID)) and isinstance(unknown, Reply)
    assert json.loads(unknown.text)["id"] == other and unknown.error == "unknown_message"
    failed = frames(s.acks_failed("u1", [MSG_ID, other], "unavailable", "x"))
    assert [f["id"] for f in failed] == [MSG_ID, other]


def test_bulk_ack_is_one_action_with_every_id_and_not_rate_limited() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=2))
    ids = [f"{i:032d}" for i in range(5)]
    frame = "/ack/u1/" + ",".join(ids)
    assert only_error(s.receive(frame, T0))["code"] == "not_subscribed"  # spends a token
    s.receive("/subscribe/u1", T0)  # the last token
    s.subscribe_done("u1")
    for _ in range(100):  # free like single acks: the window bounds them
        assert s.receive(frame, T0) == [DoAck("u1", tuple(ids))]
    legacy = open_session(Mode.LEGACY)
    subscribed(legacy, "u1")
    assert only_error(legacy.receive(frame, T0))["code"] == "ack_not_supported"


def test_ack_in_legacy_mode_is_not_supported() -> None:
    s = open_session(Mode.LEGACY)
    subscribed(s, "u1")
    assert only_error(s.receive(f"/ack/u1/{MSG_ID}", T0))["code"] == "ack_not_supported"
    assert not s.closed


def test_send() -> None:
    s = open_session()
    assert s.receive("/send/outbox hello world", T0) == [DoSend("outbox", "hello world")]
    assert frames(s.send_done("outbox", MSG_ID)) == [
        {"type": "sent", "queue": "outbox", "id": MSG_ID}
    ]
    err = only_error(s.send_failed("outbox", "queue_not_found", "no such queue"))
    assert err["queue"] == "outbox"
    assert only_error(s.receive("/send/u2 hi", T0))["code"] == "forbidden"
    legacy = open_session(Mode.LEGACY)
    legacy.receive("/send/outbox x", T0)
    assert legacy.send_done("outbox", MSG_ID) == []


def test_bad_frames_get_error_frames_when_open() -> None:
    s = open_session(Mode.LEGACY)
    assert only_error(s.receive("hello", T0))["code"] == "unknown_command"
    assert only_error(s.receive(b"\x01", T0))["code"] == "binary_not_supported"
    assert only_error(s.receive("/subscribe/a.b", T0))["code"] == "invalid_queue"
    big = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(max_frame_size=10, rate=None))
    assert only_error(big.receive("/send/outbox 12345", T0))["code"] == "frame_too_large"
    # handle() takes parsed commands and parse errors too.
    assert s.handle(p.Subscribe("u1"), T0) == [DoSubscribe("u1")]
    assert only_error(s.handle(p.ProtocolError("bad_frame", "x"), T0))["code"] == "bad_frame"


# --- rate limit ----------------------------------------------------------------------------


def test_rate_limit_closes_4429() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=5))
    for _ in range(5):
        assert not any(isinstance(a, Close) for a in s.receive("/unsubscribe/x", T0))
    assert s.receive("/unsubscribe/x", T0) == [Close(4429, "rate limit exceeded")]
    assert s.closed


def test_rate_limit_refills_over_time() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=5))
    for i in range(100):  # 10/s sustained is fine
        assert s.receive("/unsubscribe/x", T0 + i * 0.1) != [Close(4429, "rate limit exceeded")]
    assert s.handle(p.Unsubscribe("x"), T0 + 10) == [Reply(sf.encode_unsubscribed("x"))]


def test_rate_limit_counts_frames_before_auth() -> None:
    s = Session(Mode.V1, now=T0, limits=SessionLimits(rate=1, burst=1, max_pending=100))
    s.receive(f"/auth {JWT} {ACCESS}", T0)
    assert s.receive("/subscribe/u1", T0) == [Close(4429, "rate limit exceeded")]


# --- refresh, expiry, revocation -----------------------------------------------------------


def test_refresh_same_user_extends_expiry() -> None:
    s = open_session()
    assert s.receive(f"/refresh {JWT}", T0 + 100) == [DoRefresh(JWT)]
    assert s.refreshed("u1", T0 + 1800, T0 + 100) == [Reply(sf.encode_refreshed(T0 + 1800))]
    assert s.token_exp == T0 + 1800
    assert s.tick(T0 + 1000) == []  # would have expired at T0 + 900
    assert s.next_deadline() == T0 + 1740


def test_refresh_other_user_rejected() -> None:
    s = open_session()
    s.receive(f"/refresh {JWT}", T0)
    err = only_error(s.refreshed("u2", T0 + 1800, T0))
    assert err["code"] == "refresh_failed" and s.token_exp == T0 + 900 and not s.closed
    assert s.user_id == "u1"
    assert only_error(s.refresh_failed("token expired"))["detail"] == "token expired"
    assert s.tick(T0 + 900) == [Close(4403, "token expired")]


def test_refresh_of_a_revoked_user_errors_then_closes_4403() -> None:
    s = open_session()
    s.receive(f"/refresh {JWT}", T0)
    actions = s.refresh_revoked("the user is disabled")
    assert only_error(actions[:1]) == {
        "type": "error",
        "code": "refresh_failed",
        "detail": "the user is disabled",
    }
    assert actions[1:] == [Close(4403, "access revoked")]
    assert s.closed and s.refresh_revoked() == [] and s.refreshed("u1", T0 + 1800, T0) == []


def test_expiry_warning_then_close_4403() -> None:
    s = open_session(limits=SessionLimits(expiring_warning=60, rate=None))
    assert s.next_deadline() == T0 + 840
    assert s.tick(T0 + 839) == []
    assert frames(s.tick(T0 + 840.5)) == [{"type": "expiring", "seconds": 60}]
    assert s.tick(T0 + 850) == []  # warned once
    assert s.next_deadline() == T0 + 900
    assert s.tick(T0 + 900) == [Close(4403, "token expired")]
    assert s.closed and s.next_deadline() is None


def test_a_token_shorter_than_the_warning_is_warned_at_half_its_lifetime() -> None:
    """expiring_warning 60 s, a 3 s token: warned 1.5 s before exp, not at once; and each
    refresh with another short token re-arms it at half the new lifetime (no refresh loop)."""
    s = open_session(user=replace(USER, token_exp=T0 + 3), limits=SessionLimits(rate=None))
    assert s.next_deadline() == T0 + 1.5
    assert s.tick(T0 + 1.4) == []
    assert frames(s.tick(T0 + 1.5)) == [{"type": "expiring", "seconds": 2}]
    assert s.tick(T0 + 1.6) == [] and s.next_deadline() == T0 + 3
    s.receive(f"/refresh {JWT}", T0 + 1.6)
    assert frames(s.refreshed("u1", T0 + 4.6, T0 + 1.6)) == [{"type": "refreshed", "exp": T0 + 4.6}]
    assert abs((s.next_deadline() or 0) - (T0 + 3.1)) < 1e-6
    assert s.tick(T0 + 3.0) == []
    assert frames(s.tick(T0 + 3.1)) == [{"type": "expiring", "seconds": 2}]


def test_a_refreshed_token_of_an_already_expired_exp_closes() -> None:
    s = open_session(user=replace(USER, token_exp=T0 + 3), limits=SessionLimits(rate=None))
    s.receive(f"/refresh {JWT}", T0 + 2)
    assert s.refreshed("u1", T0 + 1, T0 + 2)[-1] == Close(4403, "token expired")


def test_legacy_mode_has_no_warning_but_expires() -> None:
    s = open_session(Mode.LEGACY)
    assert s.next_deadline() == T0 + 900
    assert s.tick(T0 + 899) == []
    assert s.tick(T0 + 901) == [Close(4403, "token expired")]


def test_refresh_after_warning_rearms_it() -> None:
    s = open_session()
    s.tick(T0 + 850)
    s.refreshed("u1", T0 + 1800, T0 + 850)
    assert frames(s.tick(T0 + 1750)) == [{"type": "expiring", "seconds": 50}]


def test_user_without_expiry_never_expires() -> None:
    s = open_session(user=replace(USER, token_exp=None))
    assert s.next_deadline() is None and s.tick(T0 + 10**9) == []


def test_already_expired_token_closes_on_auth() -> None:
    s = Session(Mode.V1, now=T0)
    s.receive(f"/auth {JWT} {ACCESS}", T0)
    actions = s.authenticated(replace(USER, token_exp=T0 - 1), T0)
    assert actions[-1] == Close(4403, "token expired") and s.closed


def test_revoked_and_shutdown() -> None:
    s = open_session()
    assert s.revoked() == [Close(4403, "access revoked")]
    assert s.revoked() == [] and s.shutdown() == []
    assert open_session().shutdown() == [Close(1001, "server shutting down")]
    assert open_session().shutdown(restart=True) == [Close(1012, "server restarting")]


# --- the session never raises --------------------------------------------------------------

_frames = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=8),
    st.builds(
        lambda verb, q: verb + q,
        st.sampled_from(["/subscribe/", "/unsubscribe/", "/send/", "/ack/", "/auth ", "/refresh "]),
        st.sampled_from(["u1", "shared", "outbox", "u2", f"u1/{MSG_ID}", "outbox hi", "a b", ""]),
    ),
)
_events = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), _frames),
        st.tuples(st.just("tick"), st.floats(0, 2000)),
        st.tuples(st.just("authenticated"), st.none()),
        st.tuples(st.just("auth_failed"), st.none()),
        st.tuples(st.just("refreshed"), st.sampled_from(["u1", "u2"])),
        st.tuples(st.just("done"), st.sampled_from(["u1", "shared", "outbox"])),
        st.tuples(st.just("revoked"), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from(list(Mode)), st.booleans(), st.sampled_from([None, True, False]), _events)
def test_fuzz_session_never_raises(
    mode: Mode, header_auth: bool, hook_answer: bool | None, events: list[Any]
) -> None:
    limits = SessionLimits(max_subscriptions=2, rate=20, burst=5, max_pending=4)
    s = Session(
        mode,
        now=T0,
        user=USER if header_auth else None,
        limits=limits,
        authorize_hook=hook_answer is not None,
    )
    now = T0
    for kind, arg in events:
        now += 0.05
        if kind == "frame":
            actions = s.receive(arg, now)
        elif kind == "tick":
            now = max(now, T0 + arg)
            actions = s.tick(now)
        elif kind == "authenticated":
            actions = s.authenticated(USER, now)
        elif kind == "auth_failed":
            actions = s.auth_failed()
        elif kind == "refreshed":
            actions = s.refreshed(arg, now + 900, now)
        elif kind == "done":
            actions = s.subscribe_done(arg) + s.send_done(arg, MSG_ID)
        else:
            actions = s.revoked()
        # A hook's question is always the last action; its answer goes on from there.
        while actions and isinstance(actions[-1], DoAuthorize):
            assert hook_answer is not None
            actions = actions[:-1] + s.authorized(actions[-1], hook_answer)
        closes = [a for a in actions if isinstance(a, Close)]
        assert len(closes) <= 1 and (not closes or actions[-1] is closes[0])
        if closes:
            assert s.closed
        for a in actions:
            if isinstance(a, Reply):
                json.loads(a.text)
            assert not (s.user is None and isinstance(a, DoSubscribe | DoSend | DoAck))
        assert len(s.subscriptions) <= 2


def test_valid_acks_are_not_rate_limited_but_bogus_ones_are() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=6))
    s.receive("/subscribe/u1", T0)  # spends one token
    s.subscribe_done("u1")
    ack = "/ack/u1/" + "a" * 32
    for _ in range(1000):  # bounded by the window, not by the frame rate
        assert s.receive(ack, T0) == [DoAck("u1", ("a" * 32,))]
        assert s.acks_done("u1", ["a" * 32], [True]) == [Reply(sf.encode_acked("u1", "a" * 32))]
    for _ in range(5):  # acks of unknown ids spend tokens
        s.receive(ack, T0)
        assert not any(isinstance(a, Close) for a in s.acks_done("u1", ["a" * 32], [False]))
    s.receive(ack, T0)
    assert s.acks_done("u1", ["a" * 32], [False]) == [Close(4429, "rate limit exceeded")]
    assert s.closed


def test_unknown_ids_of_one_frame_spend_a_token_each_until_the_close() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=3))
    subscribed(s, "u1")  # spends one token
    ids = [f"{i:032d}" for i in range(4)]
    actions = s.acks_done("u1", ids, [False, True, False, False])
    assert [a.error if isinstance(a, Reply) else a for a in actions] == [
        "unknown_message",
        None,
        "unknown_message",
        Close(4429, "rate limit exceeded"),
    ]


def test_acks_for_unsubscribed_queues_spend_tokens() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=3))
    ack = "/ack/other/" + "a" * 32
    for _ in range(3):
        assert only_error(s.receive(ack, T0))["code"] == "not_subscribed"
    assert s.receive(ack, T0) == [Close(4429, "rate limit exceeded")]


# --- /nack and /extend ---------------------------------------------------------------------


def test_nack_and_extend_v1() -> None:
    s = open_session(limits=SessionLimits(rate=None, max_extend=600))
    assert only_error(s.receive(f"/nack/u1/{MSG_ID}", T0))["code"] == "not_subscribed"
    assert only_error(s.receive(f"/extend/u1/{MSG_ID} 5", T0))["code"] == "not_subscribed"
    subscribed(s, "u1")
    other = "b" * 32
    assert s.receive(f"/nack/u1/{MSG_ID},{other} 7", T0) == [DoNack("u1", (MSG_ID, other), 7)]
    assert s.receive(f"/nack/u1/{MSG_ID}", T0) == [DoNack("u1", (MSG_ID,), 0)]
    assert s.receive(f"/extend/u1/{MSG_ID} 600", T0) == [DoExtend("u1", (MSG_ID,), 600)]
    # Beyond max_extend: a bad_frame error, the connection stays open.
    err = only_error(s.receive(f"/extend/u1/{MSG_ID} 601", T0))
    assert err["code"] == "bad_frame" and "600" in err["detail"] and not s.closed
    nacked, unknown = s.nacks_done("u1", [MSG_ID, other], [True, False])
    assert nacked == Reply(sf.encode_nacked("u1", MSG_ID))
    assert isinstance(unknown, Reply) and unknown.error == "unknown_message"
    assert json.loads(unknown.text)["id"] == other
    extended, unknown = s.extends_done("u1", [MSG_ID, other], [True, False])
    assert extended == Reply(sf.encode_extended("u1", MSG_ID))
    assert isinstance(unknown, Reply) and unknown.error == "unknown_message"


def test_nack_and_extend_in_legacy_mode_are_not_supported() -> None:
    s = open_session(Mode.LEGACY)
    subscribed(s, "u1")
    for frame in (f"/nack/u1/{MSG_ID}", f"/extend/u1/{MSG_ID} 5"):
        assert only_error(s.receive(frame, T0))["code"] == "ack_not_supported"
    assert not s.closed


def test_bad_nack_and_extend_arguments_answer_bad_frame_and_stay_open() -> None:
    s = open_session()
    subscribed(s, "u1")
    for frame in (f"/nack/u1/{MSG_ID} -1", f"/extend/u1/{MSG_ID}", f"/extend/u1/{MSG_ID} 0"):
        assert only_error(s.receive(frame, T0))["code"] == "bad_frame"
    assert not s.closed


def test_nacks_are_free_like_acks_but_extends_spend_tokens() -> None:
    s = Session(Mode.V1, now=T0, user=USER, limits=SessionLimits(rate=10, burst=3))
    subscribed(s, "u1")  # spends one token
    for _ in range(100):  # a nack gives a held message up: the window bounds them
        assert s.receive(f"/nack/u1/{MSG_ID}", T0) == [DoNack("u1", (MSG_ID,), 0)]
    # An extend keeps the message held, so nothing but the rate limit bounds them.
    assert s.receive(f"/extend/u1/{MSG_ID} 5", T0) == [DoExtend("u1", (MSG_ID,), 5)]
    assert s.receive(f"/extend/u1/{MSG_ID} 5", T0) == [DoExtend("u1", (MSG_ID,), 5)]
    assert s.receive(f"/extend/u1/{MSG_ID} 5", T0) == [Close(4429, "rate limit exceeded")]

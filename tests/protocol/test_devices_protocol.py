"""Device frames (``/subscribe/<q> device=<id>``, ``/leave/<q> device=<id>``): parser, session
and the reply frames; pure, no server."""

from __future__ import annotations

import json

import pytest

from wsmq.protocol import server_frames as sf
from wsmq.protocol import wire as p
from wsmq.protocol.access import default_authorize
from wsmq.protocol.actions import DoAck, DoAuthorize, DoLeave, DoSubscribe, DoUnsubscribe, Reply
from wsmq.protocol.wire import ErrorCode, Mode, parse_frame

from .test_session import T0, USER, frames, only_error, open_session


def test_parse_device_subscribe_and_leave() -> None:
    assert parse_frame("/subscribe/u1") == p.Subscribe("u1", None)
    assert parse_frame("/subscribe/u1 device=phone-2_A") == p.Subscribe("u1", "phone-2_A")
    assert parse_frame("/subscribe/u1 device=phone\r\n") == p.Subscribe("u1", "phone")
    assert parse_frame("/leave/u1 device=phone") == p.Leave("u1", "phone")
    assert parse_frame("/subscribe/u1 device=" + "d" * 64) == p.Subscribe("u1", "d" * 64)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("/subscribe/u1 device=", ErrorCode.INVALID_DEVICE),
        ("/subscribe/u1 device=" + "d" * 65, ErrorCode.INVALID_DEVICE),
        ("/subscribe/u1 device=a:b", ErrorCode.INVALID_DEVICE),
        ("/subscribe/u1 device=a b", ErrorCode.INVALID_DEVICE),
        ("/subscribe/u1 device=a@b", ErrorCode.INVALID_DEVICE),
        ("/subscribe/u1 x", ErrorCode.INVALID_QUEUE),  # as before devices existed
        ("/subscribe/u1 devices=a", ErrorCode.INVALID_QUEUE),
        ("/subscribe/u1  device=a", ErrorCode.INVALID_QUEUE),
        ("/leave/u1", ErrorCode.BAD_FRAME),
        ("/leave u1 device=a", ErrorCode.BAD_FRAME),
        ("/leave/u1 device=a:b", ErrorCode.INVALID_DEVICE),
        ("/leave/bad! device=a", ErrorCode.INVALID_QUEUE),
    ],
)
def test_parse_device_errors(frame: str, code: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        parse_frame(frame)
    assert info.value.code == code


def test_device_subscription_replies_carry_the_device() -> None:
    s = open_session()
    assert s.receive("/subscribe/u1 device=phone", T0) == [DoSubscribe("u1", "phone")]
    assert frames(s.subscribe_done("u1")) == [
        {"type": "subscribed", "queue": "u1", "device": "phone"}
    ]
    # Again as the same device: idempotent; acks go to the (device) subscription.
    again = s.receive("/subscribe/u1 device=phone", T0)
    assert frames(again) == [{"type": "subscribed", "queue": "u1", "device": "phone"}]
    msg_id = "lq3x0v1a2bCDEFghijklmnopqrstuvwx"
    assert s.receive(f"/ack/u1/{msg_id}", T0) == [DoAck("u1", (msg_id,))]
    # Another device, or none, on the same queue: refused (one subscription per queue).
    err = only_error(s.receive("/subscribe/u1 device=laptop", T0))
    assert err["code"] == "bad_frame" and "as device phone" in err["detail"]
    err = only_error(s.receive("/subscribe/u1", T0))
    assert err["code"] == "bad_frame"
    # Forbidden queues stay forbidden as a device.
    assert only_error(s.receive("/subscribe/u2 device=phone", T0))["code"] == "forbidden"


def test_leave_unsubscribes_own_device_subscription_first() -> None:
    s = open_session()
    s.receive("/subscribe/u1 device=phone", T0)
    s.subscribe_done("u1")
    assert s.receive("/leave/u1 device=phone", T0) == [
        DoUnsubscribe("u1"),
        DoLeave("u1", "phone"),
    ]
    assert s.subscriptions == frozenset()
    assert frames(s.leave_done("u1", "phone", True)) == [
        {"type": "left", "queue": "u1", "device": "phone", "removed": True}
    ]
    # Leaving another device (say a lost phone) from here; the socket stays unsubscribed.
    assert s.receive("/leave/u1 device=old", T0) == [DoLeave("u1", "old")]
    err = only_error(s.leave_failed("u1", "device_in_use", "in use"))
    assert err["code"] == "device_in_use" and err["queue"] == "u1"
    assert only_error(s.receive("/leave/u2 device=x", T0))["detail"] == "not allowed to leave u2"


def test_leave_with_an_authorize_hook_asks_as_subscribe() -> None:
    s = open_session(authorize_hook=True)
    ask = s.receive("/leave/any device=d", T0)
    assert ask == [DoAuthorize(USER, "any", "subscribe", p.Leave("any", "d"))]
    assert isinstance(ask[0], DoAuthorize)
    assert s.authorized(ask[0], True) == [DoLeave("any", "d")]
    assert only_error(s.authorized(ask[0], False))["code"] == "forbidden"


def test_leave_with_an_opted_in_authorize_hook_asks_as_leave() -> None:
    s = open_session(authorize_hook=True, authorize_leave=True)
    ask = s.receive("/leave/any device=d", T0)
    assert ask == [DoAuthorize(USER, "any", "leave", p.Leave("any", "d"))]
    assert isinstance(ask[0], DoAuthorize)
    assert s.authorized(ask[0], True) == [DoLeave("any", "d")]
    assert only_error(s.authorized(ask[0], False))["code"] == "forbidden"
    # /subscribe and /send are asked as before.
    sub = s.receive("/subscribe/any", T0)
    assert sub == [DoAuthorize(USER, "any", "subscribe", p.Subscribe("any", None))]


def test_the_default_rule_lets_a_user_leave_where_it_may_subscribe() -> None:
    user = USER
    assert default_authorize(user, user.user_id, "leave")
    assert not default_authorize(user, "someone-else", "leave")
    assert not default_authorize(user, user.user_id, "unknown")


def test_legacy_device_subscription_sends_no_success_frames() -> None:
    s = open_session(Mode.LEGACY)
    assert s.receive("/subscribe/u1 device=tv", T0) == [DoSubscribe("u1", "tv")]
    assert s.subscribe_done("u1") == []
    assert s.leave_done("u1", "tv", True) == []


def test_server_frames_round_trip() -> None:
    assert sf.decode_server_frame(sf.encode_subscribed("q", "d")) == sf.Subscribed("q", "d")
    assert sf.decode_server_frame(sf.encode_subscribed("q")) == sf.Subscribed("q", None)
    assert json.loads(sf.encode_subscribed("q")) == {"type": "subscribed", "queue": "q"}
    assert sf.decode_server_frame(sf.encode_left("q", "d", False)) == sf.Left("q", "d", False)
    with pytest.raises(sf.FrameDecodeError):
        sf.decode_server_frame('{"type":"left","queue":"q","device":"d","removed":1}')
    assert isinstance(Reply(sf.encode_left("q", "d", True)), Reply)

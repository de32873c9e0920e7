"""wsmq.protocol.server_frames: every encoder round-trips through the client's decoder."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmq.protocol import server_frames as sf
from wsmq.protocol.server_frames import (
    Acked,
    Authenticated,
    ErrorFrame,
    Expiring,
    Extended,
    FrameDecodeError,
    LegacyMessage,
    Message,
    Nacked,
    Refreshed,
    Sent,
    Subscribed,
    Unsubscribed,
    decode_server_frame,
)
from wsmq.protocol.wire import ErrorCode, Mode

texts = st.text()  # lone surrogates included: the encoder escapes them as JSON.stringify does
qnames = st.from_regex(r"[A-Za-z0-9_-]{1,160}", fullmatch=True)
ids = st.from_regex(r"[A-Za-z0-9:]{32}", fullmatch=True)
epochs = st.floats(min_value=0, max_value=1e13, allow_nan=False) | st.integers(0, 2**53)
maybe_epochs = st.none() | epochs


@settings(max_examples=300, deadline=None)
@given(qnames, ids, st.integers(0, 2**31), epochs, texts)
def test_message_round_trips_in_both_modes(
    qname: str, msg_id: str, rc: int, sent: float, body: str
) -> None:
    v1 = sf.encode_message(Mode.V1, qname, msg_id, rc, sent, body)
    assert decode_server_frame(v1) == Message(qname, msg_id, rc, sent, body)
    assert decode_server_frame(sf.encode_message_utf8(Mode.V1, qname, msg_id, rc, sent, body)) == (
        Message(qname, msg_id, rc, sent, body)
    )
    legacy = sf.encode_message(Mode.LEGACY, qname, msg_id, rc, sent, body)
    assert decode_server_frame(legacy) == LegacyMessage(body)


@settings(max_examples=200, deadline=None)
@given(qnames, ids)
def test_replies_round_trip(qname: str, msg_id: str) -> None:
    assert decode_server_frame(sf.encode_subscribed(qname)) == Subscribed(qname)
    assert decode_server_frame(sf.encode_unsubscribed(qname)) == Unsubscribed(qname)
    assert decode_server_frame(sf.encode_sent(qname, msg_id)) == Sent(qname, msg_id)
    assert decode_server_frame(sf.encode_acked(qname, msg_id)) == Acked(qname, msg_id)
    assert decode_server_frame(sf.encode_nacked(qname, msg_id)) == Nacked(qname, msg_id)
    assert decode_server_frame(sf.encode_extended(qname, msg_id)) == Extended(qname, msg_id)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(ErrorCode)), texts, st.none() | qnames, st.none() | ids)
def test_errors_round_trip(
    code: ErrorCode, detail: str, queue: str | None, msg_id: str | None
) -> None:
    frame = sf.encode_error(code, detail, queue=queue, msg_id=msg_id)
    assert decode_server_frame(frame) == ErrorFrame(str(code), detail, queue, msg_id)


@settings(max_examples=200, deadline=None)
@given(epochs, st.text(min_size=1), maybe_epochs)
def test_session_frames_round_trip(seconds: float, user: str, exp: float | None) -> None:
    assert decode_server_frame(sf.encode_expiring(seconds)) == Expiring(seconds)
    assert decode_server_frame(sf.encode_authenticated(user, exp)) == Authenticated(user, exp)
    assert decode_server_frame(sf.encode_refreshed(exp)) == Refreshed(exp)


def test_integral_epochs_decode_as_the_integers_sent() -> None:
    frame = decode_server_frame(sf.encode_message(Mode.V1, "q", "a" * 32, 1, 1700000000.0, "x"))
    assert isinstance(frame, Message) and type(frame.sent) is int


def test_unknown_keys_are_ignored() -> None:
    assert decode_server_frame('{"type":"acked","queue":"q","id":"i","new":1}') == Acked("q", "i")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        b"\xff",
        "[1]",
        "{}",
        '{"type":"nope"}',
        '{"type":"subscribed"}',
        '{"type":"acked","queue":"q","id":1}',
        '{"type":"message","queue":"q","id":"i","rc":true,"sent":1,"message":"m"}',
        '{"type":"message","queue":"q","id":"i","rc":1.5,"sent":1,"message":"m"}',
        '{"type":"expiring","seconds":"1"}',
        '{"type":"refreshed","exp":"soon"}',
        '{"message":1}',
    ],
)
def test_malformed_frames_raise_a_typed_error(text: str | bytes) -> None:
    with pytest.raises(FrameDecodeError):
        decode_server_frame(text)


def test_a_legacy_error_is_never_a_delivery() -> None:
    frame = sf.encode_error(ErrorCode.FORBIDDEN, "no", queue="q")
    assert "message" not in json.loads(frame)
    assert isinstance(decode_server_frame(frame), ErrorFrame)

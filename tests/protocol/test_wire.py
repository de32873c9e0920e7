"""wsmq.protocol.wire and server_frames: frame parsing and server frame encoding (pure)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmq.protocol import server_frames as sf
from wsmq.protocol import wire as p
from wsmq.protocol.wire import (
    Ack,
    AckMany,
    Auth,
    ErrorCode,
    Extend,
    Mode,
    Nack,
    ProtocolError,
    Refresh,
    Send,
    Subscribe,
    Unsubscribe,
    parse_frame,
)

MSG_ID = "lq3x0v1a2bCDEFghijklmnopqrstuvwx"  # 32 chars of [A-Za-z0-9]
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2Vycy91MSJ9.c2lnbmF0dXJl"
ACCESS = "a" * 64


def code_of(frame: str | bytes, max_size: int = p.DEFAULT_MAX_FRAME_SIZE) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_frame(frame, max_size=max_size)
    return info.value.code


# --- parsing: every command ----------------------------------------------------------------


def test_bulk_ack_parses_every_id_and_rejects_any_bad_one() -> None:
    other = "b" * 32
    assert parse_frame(f"/ack/q1/{MSG_ID},{other}") == AckMany("q1", (MSG_ID, other))
    assert parse_frame(f"/ack/q1/{MSG_ID},{other}\n") == AckMany("q1", (MSG_ID, other))
    many = ",".join([MSG_ID] * p.MAX_ACK_IDS)
    assert parse_frame(f"/ack/q1/{many}") == AckMany("q1", (MSG_ID,) * p.MAX_ACK_IDS)
    assert code_of(f"/ack/q1/{many},{MSG_ID}") == ErrorCode.BAD_FRAME
    for bad in (f"{MSG_ID},", f",{MSG_ID}", f"{MSG_ID},,{other}", f"{MSG_ID},short"):
        assert code_of(f"/ack/q1/{bad}") == ErrorCode.INVALID_ID, bad
    assert code_of(f"/ack/bad!/{MSG_ID},{other}") == ErrorCode.INVALID_QUEUE


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("/subscribe/user1", Subscribe("user1")),
        ("/subscribe/" + "a" * 160, Subscribe("a" * 160)),
        ("/subscribe/A-b_9", Subscribe("A-b_9")),
        ("/subscribe/q\n", Subscribe("q")),
        ("/subscribe/q\r\n", Subscribe("q")),
        ("/unsubscribe/q1", Unsubscribe("q1")),
        ("/unsubscribe/q1\n", Unsubscribe("q1")),
        (f"/ack/q1/{MSG_ID}", Ack("q1", MSG_ID)),
        (f"/ack/q1/{'a:' * 16}", Ack("q1", "a:" * 16)),
        (f"/ack/q1/{MSG_ID}\r\n", Ack("q1", MSG_ID)),
        ("/send/q1 hello", Send("q1", "hello")),
        ("/send/q1 hello world", Send("q1", "hello world")),
        ("/send/q1  two leading", Send("q1", " two leading")),
        ("/send/q1 ", Send("q1", "")),
        ("/send/q1 line1\nline2\n", Send("q1", "line1\nline2\n")),
        ('/send/q1 {"a": "é😀"}', Send("q1", '{"a": "é😀"}')),
        (f"/auth {JWT} {ACCESS}", Auth(JWT, ACCESS)),
        (f"/auth {JWT}  {ACCESS}\r\n", Auth(JWT, ACCESS)),
        (f"/refresh {JWT}", Refresh(JWT)),
        (f"/refresh {JWT}\n", Refresh(JWT)),
    ],
)
def test_parse_commands(frame: str, expected: p.Command) -> None:
    assert parse_frame(frame, max_size=1 << 20) == expected


# --- parsing: every error code -------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("", ErrorCode.UNKNOWN_COMMAND),
        ("hello", ErrorCode.UNKNOWN_COMMAND),
        ("subscribe/q", ErrorCode.UNKNOWN_COMMAND),
        ("/", ErrorCode.UNKNOWN_COMMAND),
        ("/publish/q x", ErrorCode.UNKNOWN_COMMAND),
        ("/Subscribe/q", ErrorCode.UNKNOWN_COMMAND),
        (" /subscribe/q", ErrorCode.UNKNOWN_COMMAND),
        ("/subscribe", ErrorCode.BAD_FRAME),
        ("/subscribe q", ErrorCode.BAD_FRAME),
        ("/unsubscribe", ErrorCode.BAD_FRAME),
        ("/ack/q1", ErrorCode.BAD_FRAME),
        (f"/ack/q1/{MSG_ID}/x", ErrorCode.BAD_FRAME),
        (f"/ack q1 {MSG_ID}", ErrorCode.BAD_FRAME),
        ("/send/q1", ErrorCode.BAD_FRAME),
        ("/send q1 x", ErrorCode.BAD_FRAME),
        ("/auth", ErrorCode.BAD_FRAME),
        (f"/auth {JWT}", ErrorCode.BAD_FRAME),
        (f"/auth {JWT} {ACCESS} extra", ErrorCode.BAD_FRAME),
        (f"/auth/{JWT}/{ACCESS}", ErrorCode.BAD_FRAME),
        (f"/auth {JWT} é{ACCESS}", ErrorCode.BAD_FRAME),
        (f"/auth {'x' * 9000} {ACCESS}", ErrorCode.BAD_FRAME),
        ("/refresh", ErrorCode.BAD_FRAME),
        ("/refresh ", ErrorCode.BAD_FRAME),
        (f"/refresh {JWT} {JWT}", ErrorCode.BAD_FRAME),
        ("/subscribe/", ErrorCode.INVALID_QUEUE),
        ("/subscribe/a.b", ErrorCode.INVALID_QUEUE),
        ("/subscribe/q x", ErrorCode.INVALID_QUEUE),
        ("/subscribe/" + "a" * 161, ErrorCode.INVALID_QUEUE),
        ("/subscribe/é", ErrorCode.INVALID_QUEUE),
        ("/subscribe/q\n\n", ErrorCode.INVALID_QUEUE),
        ("/subscribe/q/x", ErrorCode.INVALID_QUEUE),
        ("/unsubscribe/../x", ErrorCode.INVALID_QUEUE),
        (f"/ack/q.1/{MSG_ID}", ErrorCode.INVALID_QUEUE),
        ("/send/q.1 hi", ErrorCode.INVALID_QUEUE),
        ("/send/ hi", ErrorCode.INVALID_QUEUE),
        ("/ack/q1/short", ErrorCode.INVALID_ID),
        (f"/ack/q1/{MSG_ID}x", ErrorCode.INVALID_ID),
        (f"/ack/q1/{MSG_ID[:-1]}-", ErrorCode.INVALID_ID),
    ],
)
def test_parse_errors(frame: str, code: str) -> None:
    assert code_of(frame) == code


def test_binary_frames_rejected() -> None:
    assert code_of(b"/subscribe/q") == ErrorCode.BINARY_NOT_SUPPORTED
    assert code_of(b"") == ErrorCode.BINARY_NOT_SUPPORTED


def test_frame_size_limit_counts_utf8_bytes() -> None:
    ok = "/send/q " + "x" * 92  # exactly 100 bytes
    assert parse_frame(ok, max_size=100) == Send("q", "x" * 92)
    assert code_of(ok + "x", max_size=100) == ErrorCode.FRAME_TOO_LARGE
    # 30 characters but 8 + 22*3 = 74 bytes
    wide = "/send/q " + "€" * 22
    assert parse_frame(wide, max_size=74) == Send("q", "€" * 22)
    assert code_of(wide, max_size=73) == ErrorCode.FRAME_TOO_LARGE
    assert code_of("x" * 200_000) == ErrorCode.FRAME_TOO_LARGE


def test_protocol_error_carries_code_and_text() -> None:
    err = ProtocolError(ErrorCode.FORBIDDEN, "no")
    assert err.code == "forbidden" and type(err.code) is str
    assert err.message == "no" and str(err) == "no"
    assert "forbidden" in repr(err)


def test_secrets_and_bodies_not_in_repr() -> None:
    text = repr([Auth(JWT, ACCESS), Refresh(JWT), Send("q", "secret body")])
    assert JWT not in text and ACCESS not in text and "secret body" not in text
    assert "q" in repr(Send("q", "x"))


def test_validators_and_modes() -> None:
    assert p.is_valid_qname("a-B_0") and not p.is_valid_qname("") and not p.is_valid_qname("a b")
    assert p.is_valid_id(MSG_ID) and not p.is_valid_id(MSG_ID + "a")
    assert p.mode_for_subprotocol("wsmq.v1") is Mode.V1
    assert p.mode_for_subprotocol(None) is Mode.LEGACY
    assert p.mode_for_subprotocol("other") is Mode.LEGACY
    assert p.SUBPROTOCOLS == ("wsmq.v1",)
    assert (p.CLOSE_GOING_AWAY, p.CLOSE_SERVICE_RESTART) == (1001, 1012)
    assert (p.CLOSE_AUTH_FAILED, p.CLOSE_TOKEN_EXPIRED) == (4401, 4403)
    assert (p.CLOSE_AUTH_TIMEOUT, p.CLOSE_RATE_LIMITED) == (4408, 4429)
    assert (p.CLOSE_POLICY, p.CLOSE_TOO_BIG) == (1008, 1009)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(), st.binary(max_size=20)))
def test_fuzz_random_frames_only_raise_protocol_error(frame: str | bytes) -> None:
    try:
        parse_frame(frame, max_size=256)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode)


_verbs = st.sampled_from(
    ["/subscribe", "/unsubscribe", "/ack", "/nack", "/extend", "/send", "/auth", "/refresh"]
)
_parts = st.text(alphabet=st.sampled_from("aZ09_-:./ \n\r\t€é\x00"), max_size=40)


@settings(max_examples=2000, deadline=None)
@given(_verbs, st.sampled_from(["/", " ", "", "\n"]), _parts)
def test_fuzz_command_shaped_frames(verb: str, sep: str, rest: str) -> None:
    frame = verb + sep + rest
    try:
        command = parse_frame(frame, max_size=1024)
    except ProtocolError as exc:
        assert exc.code in set(ErrorCode)
        return
    # Whatever parses carries only valid names and ids.
    qname = getattr(command, "qname", None)
    assert qname is None or p.is_valid_qname(qname)
    if isinstance(command, Ack):
        assert p.is_valid_id(command.id)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_-]{1,160}", fullmatch=True), st.text())
def test_send_roundtrip_keeps_body_verbatim(qname: str, body: str) -> None:
    assert parse_frame(f"/send/{qname} {body}", max_size=1 << 20) == Send(qname, body)


# --- encoding ------------------------------------------------------------------------------

TRICKY = [
    "plain",
    "",
    'quote " backslash \\ slash /',
    "controls \x00\x01\x08\x0b\x0c\x1f\x7f \b\f\n\r\t",
    "non-ascii é ü 中文 😀 \u2028 \u2029 \ufeff",
    '{"nested": "json", "n": [1, 2]}',
    "lone surrogate \ud800 end",
]


def test_legacy_message_is_exactly_the_original_frame() -> None:
    assert sf.encode_message(Mode.LEGACY, "q", MSG_ID, 3, 1700000000000, "hi") == '{"message":"hi"}'
    assert sf.encode_message(Mode.LEGACY, "q", MSG_ID, 1, 1, 'a"é\n') == '{"message":"a\\"é\\n"}'


def test_v1_message_envelope_exact() -> None:
    text = sf.encode_message(Mode.V1, "q1", MSG_ID, 2, 1700000000123.0, "hé")
    assert text == (
        f'{{"type":"message","queue":"q1","id":"{MSG_ID}","rc":2,"sent":1700000000123,'
        '"message":"hé"}'
    )


@pytest.mark.parametrize("body", TRICKY)
def test_encoding_roundtrips(body: str) -> None:
    text = sf.encode_message(Mode.LEGACY, "q", MSG_ID, 1, 1, body)
    text.encode("utf-8")  # valid UTF-8 even with a lone surrogate in the body
    if "\ud800" not in body:
        assert json.loads(text) == {"message": body}
    assert "\n" not in text and "\r" not in text  # control characters always escaped
    envelope = sf.encode_message(Mode.V1, "q", MSG_ID, 1, 1, body)
    envelope.encode("utf-8")
    if "\ud800" not in body:
        assert json.loads(envelope)["message"] == body


def test_stdlib_fallback_matches_fast_path() -> None:
    for body in TRICKY[:-1]:
        assert sf._json_dumps({"message": body}) == sf.dumps({"message": body})
    assert sf.dumps({"message": "\ud800"}) == '{"message":"\\ud800"}'


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_legacy_frames_match_javascript_json_stringify() -> None:
    script = (
        "const lines = require('fs').readFileSync(0, 'utf8').trim().split('\\n');"
        "for (const l of lines) console.log(JSON.stringify({message: JSON.parse(l)}));"
    )
    # Feed the bodies as ASCII-escaped JSON so the pipe never carries a lone surrogate.
    stdin = "\n".join(json.dumps(b) for b in TRICKY) + "\n"
    out = subprocess.run(
        ["node", "-e", script], input=stdin.encode(), capture_output=True, check=True, timeout=30
    ).stdout.decode("utf-8", "surrogatepass")
    expected = out.strip("\n").split("\n")
    # JS prints U+2028/2029 raw; splitting on \n alone keeps them inside their line.
    assert len(expected) == len(TRICKY)
    for body, js in zip(TRICKY, expected, strict=True):
        assert sf.encode_message(Mode.LEGACY, "q", MSG_ID, 1, 1, body) == js


def test_control_frames_exact() -> None:
    assert sf.encode_subscribed("q") == '{"type":"subscribed","queue":"q"}'
    assert sf.encode_unsubscribed("q") == '{"type":"unsubscribed","queue":"q"}'
    assert sf.encode_sent("q", MSG_ID) == f'{{"type":"sent","queue":"q","id":"{MSG_ID}"}}'
    assert sf.encode_acked("q", MSG_ID) == f'{{"type":"acked","queue":"q","id":"{MSG_ID}"}}'
    assert sf.encode_expiring(30) == '{"type":"expiring","seconds":30}'
    assert sf.encode_authenticated("u1", 1700000900.0) == (
        '{"type":"authenticated","user":"u1","exp":1700000900}'
    )
    assert sf.encode_authenticated("u1", None) == '{"type":"authenticated","user":"u1","exp":null}'
    assert sf.encode_refreshed(1700000900.5) == '{"type":"refreshed","exp":1700000900.5}'


def test_error_frame_never_looks_like_a_delivery() -> None:
    text = sf.encode_error(ErrorCode.FORBIDDEN, "not allowed", queue="q")
    assert text == '{"type":"error","code":"forbidden","detail":"not allowed","queue":"q"}'
    assert "message" not in json.loads(text)
    with_id = json.loads(sf.encode_error("unknown_message", "gone", queue="q", msg_id=MSG_ID))
    assert with_id == {
        "type": "error",
        "code": "unknown_message",
        "detail": "gone",
        "queue": "q",
        "id": MSG_ID,
    }


def test_close_reason_is_truncated_to_123_bytes() -> None:
    assert p.close_reason("short") == "short"
    long = p.close_reason("é" * 100)
    assert len(long.encode()) <= 123 and long == "é" * 61


# --- /nack and /extend ---------------------------------------------------------------------


def test_nack_parses_ids_and_an_optional_delay() -> None:
    other = "b" * 32
    assert parse_frame(f"/nack/q1/{MSG_ID}") == Nack("q1", (MSG_ID,), 0)
    assert parse_frame(f"/nack/q1/{MSG_ID},{other} 30\n") == Nack("q1", (MSG_ID, other), 30)
    assert parse_frame(f"/nack/q1/{MSG_ID} 0") == Nack("q1", (MSG_ID,), 0)
    assert parse_frame(f"/nack/q1/{MSG_ID} {p.MAX_VT}") == Nack("q1", (MSG_ID,), p.MAX_VT)


def test_extend_parses_ids_and_required_seconds() -> None:
    other = "b" * 32
    assert parse_frame(f"/extend/q1/{MSG_ID} 60") == Extend("q1", (MSG_ID,), 60)
    assert parse_frame(f"/extend/q1/{MSG_ID},{other} 1\r\n") == Extend("q1", (MSG_ID, other), 1)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (f"/nack/q1/{MSG_ID} -1", ErrorCode.BAD_FRAME),
        (f"/nack/q1/{MSG_ID} 10000000", ErrorCode.BAD_FRAME),
        (f"/nack/q1/{MSG_ID} 1.5", ErrorCode.BAD_FRAME),
        (f"/nack/q1/{MSG_ID} ", ErrorCode.BAD_FRAME),
        (f"/nack/q1/{MSG_ID} 1 2", ErrorCode.BAD_FRAME),
        (f"/nack/q1/{MSG_ID} x", ErrorCode.BAD_FRAME),
        (f"/nack q1 {MSG_ID}", ErrorCode.BAD_FRAME),
        ("/nack/q1", ErrorCode.BAD_FRAME),
        (f"/nack/q1/{MSG_ID}/x", ErrorCode.BAD_FRAME),
        ("/nack/q1/short", ErrorCode.INVALID_ID),
        (f"/nack/q1/{MSG_ID},short 5", ErrorCode.INVALID_ID),
        (f"/nack/q.1/{MSG_ID}", ErrorCode.INVALID_QUEUE),
        (f"/extend/q1/{MSG_ID}", ErrorCode.BAD_FRAME),
        (f"/extend/q1/{MSG_ID} 0", ErrorCode.BAD_FRAME),
        (f"/extend/q1/{MSG_ID} -5", ErrorCode.BAD_FRAME),
        (f"/extend/q1/{MSG_ID} 10000000", ErrorCode.BAD_FRAME),
        (f"/extend/q1/{MSG_ID} ten", ErrorCode.BAD_FRAME),
        ("/extend/q1/short 5", ErrorCode.INVALID_ID),
        (f"/extend/q.1/{MSG_ID} 5", ErrorCode.INVALID_QUEUE),
    ],
)
def test_bad_nack_and_extend_frames(frame: str, code: str) -> None:
    assert code_of(frame) == code


def test_nack_and_extend_take_at_most_max_ack_ids() -> None:
    many = ",".join([MSG_ID] * (p.MAX_ACK_IDS + 1))
    assert code_of(f"/nack/q1/{many}") == ErrorCode.BAD_FRAME
    assert code_of(f"/extend/q1/{many} 5") == ErrorCode.BAD_FRAME

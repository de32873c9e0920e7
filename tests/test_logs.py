"""wsmq.logs: one line per event, JSON option, secrets redacted everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from wsmq.logs import REDACTED, configure_logging, redact

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2Vycy91MSJ9.Zm9vYmFyYmF6"
ACCESS = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    handler = configure_logging("DEBUG", json=True, stream=stream)
    yield stream, logging.getLogger("wsmq.test")
    root.removeHandler(handler)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"x-token: {JWT}", f"x-token: {REDACTED}"),
        (f"x-access-token={ACCESS}", f"x-access-token={REDACTED}"),
        (
            f"{{'x-access-token': '{ACCESS}', 'a': 1}}",
            f"{{'x-access-token': '{REDACTED}', 'a': 1}}",
        ),
        (f'{{"X-Token": "{JWT}"}}', f'{{"X-Token": "{REDACTED}"}}'),
        (f"Authorization: Bearer {JWT}", f"Authorization: Bearer {REDACTED}"),
        ("authorization=Basic dXNlcjpwYXNz", f"authorization=Basic {REDACTED}"),
        (f"frame /auth {JWT} {ACCESS} received", f"frame /auth {REDACTED} received"),
        (f"/refresh {JWT}", f"/refresh {REDACTED}"),
        (
            f'{{"accessToken":"{ACCESS}","expiresIn":900}}',
            f'{{"accessToken":"{REDACTED}","expiresIn":900}}',
        ),
        ("password=hunter2&user=bob", f"password={REDACTED}&user=bob"),
        (f"bare jwt {JWT} here", f"bare jwt {REDACTED} here"),
        ("/subscribe/u1 from 10.0.0.1", "/subscribe/u1 from 10.0.0.1"),
        ("queue tokens-in created", "queue tokens-in created"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redacts_message_and_args(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    log.info("frame %s from %s", f"/auth {JWT} {ACCESS}", "peer1")
    log.warning("headers %r", {"x-token": JWT, "x-access-token": ACCESS, "host": "h"})
    out = stream.getvalue()
    assert JWT not in out and ACCESS not in out
    first, second = lines(stream)
    assert first["msg"] == f"frame /auth {REDACTED} from peer1"
    assert "'host': 'h'" in second["msg"]


def test_redacts_extra_fields(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    log.info(
        "login",
        extra={
            "x_token": JWT,
            "headers": {"Authorization": f"Bearer {JWT}", "Accept": "*/*"},
            "note": f"token={ACCESS}",
            "frames": [f"/refresh {JWT}", "/subscribe/q"],
            "user": "u1",
        },
    )
    assert JWT not in stream.getvalue() and ACCESS not in stream.getvalue()
    (line,) = lines(stream)
    assert line["x_token"] == REDACTED
    assert line["headers"] == {"Authorization": REDACTED, "Accept": "*/*"}
    assert line["note"] == f"token={REDACTED}"
    assert line["frames"] == [f"/refresh {REDACTED}", "/subscribe/q"]
    assert line["user"] == "u1" and line["level"] == "info" and line["logger"] == "wsmq.test"
    assert line["ts"].endswith("Z")


def test_redacts_tracebacks(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        log.exception("verify failed")
    (line,) = lines(stream)
    assert JWT not in stream.getvalue()
    assert "ValueError: bad token [REDACTED]" in line["exc"]


def test_records_from_other_loggers_are_redacted(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, _ = capture
    logging.getLogger("aiohttp.access").info('GET /ws?token=%s 101 "x-token: %s"', ACCESS, JWT)
    assert ACCESS not in stream.getvalue() and JWT not in stream.getvalue()


def test_text_mode_is_one_line_per_event() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("INFO", json=False, stream=stream)
        configure_logging("INFO", json=False, stream=stream)  # replaces, does not duplicate
        log = logging.getLogger("wsmq.test")
        log.debug("hidden")
        log.info("two\nlines", extra={"queue": "q1"})
        try:
            raise RuntimeError(f"x-token={JWT}")
        except RuntimeError:
            log.exception("boom")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    out = stream.getvalue().splitlines()
    assert len(out) == 2
    assert " INFO wsmq.test two\\nlines queue=q1" in out[0]
    assert "boom" in out[1] and "Traceback" in out[1] and JWT not in out[1]


def test_bad_format_string_is_still_logged(capture: tuple[io.StringIO, logging.Logger]) -> None:
    stream, log = capture
    log.info("%s %s", JWT)
    (line,) = lines(stream)
    assert JWT not in line["msg"] and "%s %s" in line["msg"]


def test_a_connection_log_adds_peer_and_user_and_redacts_like_any_extra(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    from wsmq.gateway.log import ConnectionLog

    stream, _ = capture
    ConnectionLog("10.0.0.7", "alice").info(
        "closing connection", extra={"event": "ws_close", "code": 1000, "token": "s3cr3t"}
    )
    ConnectionLog("10.0.0.8", None).info("handshake rejected", extra={"event": "x", "peer": "p"})
    first, second = lines(stream)
    assert first["peer"] == "10.0.0.7" and first["user"] == "alice"
    assert first["event"] == "ws_close" and first["code"] == 1000
    assert first["token"] == REDACTED and "s3cr3t" not in stream.getvalue()
    assert second["user"] is None
    assert second["peer"] == "p"  # the call's own extra wins


@pytest.mark.parametrize(
    "key",
    [
        "x-access-token", "X-Token", "x_access_token", "x_token", "Authorization",
        "accessToken", "access-token", "refresh_token", "RefreshToken", "token", "password",
        "PASSWD", "secret", "cookie", "Set-Cookie",
    ],
)  # fmt: skip
def test_every_sensitive_key_gets_past_the_quick_check(key: str) -> None:
    # redact() returns text without any trigger word untouched: each key must be one.
    for text in (f"{key}=s3cr3tvalue", f'{{"{key}": "s3cr3tvalue"}}', f"{key}: s3cr3tvalue"):
        assert "s3cr3tvalue" not in redact(text), text


def test_text_without_a_trigger_comes_back_as_is() -> None:
    text = "connection open peer=127.0.0.1 user=alice mode=legacy"
    assert redact(text) is text

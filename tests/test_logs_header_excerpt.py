"""The excerpt aiohttp puts in its error for an over-long request line or header (the first
100 bytes of the value: a cookie or token without its header name) is redacted in logs,
also where the node's pre-upgrade guard is not installed (a host app's server)."""

from __future__ import annotations

import io
import logging

import pytest
from aiohttp.http_exceptions import LineTooLong

from wsmq.logs import REDACTED, configure_logging


@pytest.mark.parametrize("json", [False, True])
def test_the_value_in_aiohttps_line_too_long_error_is_redacted(json: bool) -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", json=json, stream=stream)
    value = b"opaque-session-id-7f3a9c; other=1" + b"Z" * 100
    try:
        try:
            raise LineTooLong(value[:100] + b"...", 8190)
        except LineTooLong as exc:
            logging.getLogger("aiohttp.server").exception(
                "Error handling request from %s", "127.0.0.1", exc_info=exc
            )
            logging.getLogger("aiohttp.server").warning("%s", exc.message)
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "opaque-session-id" not in text and "ZZZZ" not in text
    assert text.count(f"Got more than 8190 bytes when reading: {REDACTED}") == 2

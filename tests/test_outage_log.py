"""OutageLog: one line when an outage starts, one per interval, one when it ends."""

from __future__ import annotations

import logging

import pytest

from wsmq.logs import OutageLog


def test_one_line_per_outage_and_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outage = OutageLog(logging.getLogger("wsmq.test"), "thing", every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, "wsmq.test")
    outage.recovered()  # never failed: nothing to say
    for _ in range(50):  # a fast retry loop
        outage.failed("refused")
        now[0] += 0.5
    assert [r.getMessage() for r in caplog.records] == ["thing: refused; retrying with backoff"]
    now[0] = 161.0
    outage.failed("refused")
    outage.failed("refused")
    assert len(caplog.records) == 2
    assert "still failing after 61 s (51 attempts; last: refused)" in caplog.records[1].getMessage()
    outage.recovered()
    outage.recovered()
    assert len(caplog.records) == 3
    assert "connected again after 61.0 s" in caplog.records[2].getMessage()
    outage.failed("timeout", level=logging.ERROR)  # a new outage starts with a line at once
    assert caplog.records[3].levelno == logging.ERROR
    assert caplog.records[3].getMessage() == "thing: timeout; retrying with backoff"


def test_every_line_has_an_event_key(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    outage = OutageLog(logging.getLogger("wsmq.test"), "thing", every=1.0, clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, "wsmq.test")
    outage.failed("refused")
    now[0] = 2.0
    outage.failed("refused")
    outage.recovered()
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events == ["outage_started", "outage_ongoing", "outage_ended"]

"""Parts of the pre-upgrade guard and of the mask check, without a node: the aiohttp version
check, throttled logging, the accept-error handler, the connection cap and the frame walker
of :class:`~wsmq.gateway.frames.MaskedFramesOnly` (the e2e tests run them on real sockets)."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
from typing import Any

import aiohttp
import pytest

from tests.gateway.wsframes import client_frame
from wsmq.gateway.frames import MaskedFramesOnly
from wsmq.gateway.preupgrade import (
    VERIFIED,
    AcceptErrorThrottle,
    ThrottledLog,
    effective_http_cap,
    supported,
)


def test_the_installed_aiohttp_is_one_the_guard_was_checked_against() -> None:
    """Fails after an aiohttp upgrade: read its ``web_server.Server`` (``connection_made``,
    ``connection_lost``, ``request_factory``) and ``web_protocol.RequestHandler``
    (``_messages``, ``_ErrInfo``, ``force_close``, ``close``), then add the version to
    ``VERIFIED`` — or nodes run without header deadline and connection cap."""
    assert supported(), f"aiohttp {aiohttp.__version__} not in {VERIFIED}"


def test_a_throttled_log_writes_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsmq.gateway")
    throttled = ThrottledLog("thing happened", "thing", interval=3600.0)
    for _ in range(500):
        throttled.note()
    assert [r.getMessage() for r in caplog.records] == ["thing happened"]
    assert throttled.total == 500
    throttled.interval = 0.0
    throttled.note()
    assert [getattr(r, "suppressed", None) for r in caplog.records] == [0, 499]


async def test_accept_resource_errors_are_throttled_and_other_errors_pass_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    throttle = AcceptErrorThrottle(interval=3600.0)
    throttle.install(loop)
    try:
        for code in [errno.EMFILE] * 300 + [errno.ENFILE]:
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(code, "x"),
                }
            )
        other = {"message": "something else", "exception": RuntimeError("boom")}
        loop.call_exception_handler(other)
    finally:
        throttle.uninstall()
        assert loop.get_exception_handler() is not throttle
        loop.set_exception_handler(previous)
    accept_records = [
        r for r in caplog.records if getattr(r, "event", "") == "accept_resource_error"
    ]
    assert len(accept_records) == 1 and accept_records[0].exc_info is None
    assert throttle.log.total == 301
    assert seen == [other]


def test_the_connection_cap_is_at_most_a_quarter_of_the_open_file_limit() -> None:
    assert effective_http_cap(1024, 1 << 20) == 1024
    assert effective_http_cap(1024, 1024) == 256
    assert effective_http_cap(1024, 20) == 16
    assert effective_http_cap(0, 1024) == 0  # unlimited stays unlimited
    assert effective_http_cap(1024, None) == 1024


class Reader:
    """Records what the mask check passes on."""

    def __init__(self) -> None:
        self.data = b""
        self.eof = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        self.eof = True


class Queue:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def set_exception(self, exc: BaseException) -> None:
        self.errors.append(exc)


def frame(size: int, *, masked: bool = True, opcode: int = 0x2) -> bytes:
    return client_frame(os.urandom(size), masked=masked, opcode=opcode)


def feed(stream: bytes, cuts: list[int]) -> tuple[Reader, Queue, list[tuple[bool, bytes]]]:
    reader, queue = Reader(), Queue()
    check = MaskedFramesOnly(reader, queue)
    results = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        results.append(check.feed_data(stream[start:end]))
    check.feed_eof()
    assert reader.eof
    return reader, queue, results


@pytest.mark.parametrize("seed", range(20))
def test_masked_frames_pass_unchanged_however_the_reads_split_them(seed: int) -> None:
    rng = random.Random(seed)
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000] + [rng.randrange(300) for _ in range(30)]
    rng.shuffle(sizes)
    stream = b"".join(
        frame(n, opcode=rng.choice((0x1, 0x2, 0x9, 0xA)) if n < 126 else 0x2) for n in sizes
    )
    cuts = sorted(rng.sample(range(1, len(stream)), 60))
    reader, queue, results = feed(stream, cuts)
    assert reader.data == stream and queue.errors == []
    assert all(r == (False, b"") for r in results)


@pytest.mark.parametrize("split", [None, 1, 3])
def test_an_unmasked_frame_fails_the_connection_with_1002(split: int | None) -> None:
    good = frame(200)
    bad = frame(10, masked=False)
    stream = good + bad + frame(5)
    cuts = [len(good) + split] if split is not None else []
    reader, queue, results = feed(stream, cuts)
    assert len(queue.errors) == 1
    error = queue.errors[0]
    assert isinstance(error, aiohttp.WebSocketError) and error.code == 1002
    assert results[-1] == (True, b"")
    # What came before the unmasked frame is handled, and nothing after its header's second
    # byte (with split 1, the first byte went on before the second told it was unmasked).
    assert reader.data == good + (bad[:1] if split == 1 else b"")

"""Product issues the chaos suite found, reproduced deterministically (xfail until fixed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from wsmq.queue import Queues
from wsmq.redisproc import RedisProcess

pytestmark = pytest.mark.chaos


class ReplyEater:
    """A TCP proxy to Redis that, once armed, forwards the next request but drops the
    connection instead of passing its reply back (the reply is lost in transit)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.eaten = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._transports: list[asyncio.WriteTransport] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._transports += [writer.transport, up_writer.transport]

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if self.armed:
                    self.armed = False
                    self.eaten += 1
                    writer.transport.abort()  # Redis applied the command; the reply is lost
                    up_writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        try:
            with contextlib.suppress(OSError, ConnectionError):
                await asyncio.gather(upstream(), downstream())
        finally:
            writer.transport.abort()
            up_writer.transport.abort()
            self._handlers.discard(task)

    async def aclose(self) -> None:
        # Abort rather than cancel: Python 3.11's start_server logs cancelled handlers.
        for transport in self._transports:
            transport.abort()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
def redis_proc_private() -> Iterator[RedisProcess]:
    proc = RedisProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.mark.xfail(
    strict=True,
    reason="Queues.from_url retries a send whose reply was lost (redis-py Retry on connection "
    "errors): the script already stored the message, the retry stores a second copy under a "
    "new id, and the caller only learns the second id",
)
async def test_send_with_lost_reply_stores_one_message(
    redis_proc_private: RedisProcess,
) -> None:
    proxy = ReplyEater(redis_proc_private.port)
    await proxy.start()
    queues = Queues.from_url(f"redis://127.0.0.1:{proxy.port}/0")
    try:
        async with asyncio.timeout(10):
            await queues.create_queue("q")
            await queues.send_message("q", "warm-up")  # the send script is cached now
            proxy.armed = True
            msg_id = await queues.send_message("q", "once")  # no error surfaces
            assert proxy.eaten == 1
            assert msg_id
            attrs = await queues.get_queue_attributes("q")
            stored = attrs.msgs - 1
            assert stored == 1, f"{stored} messages stored by one send_message call"
    finally:
        await queues.close()
        await proxy.aclose()

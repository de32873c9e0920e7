"""WebSocket load generator, run as its own process: ``python -m bench.loadgen '<json config>'``.

Opens ``clients`` (each ``{"url", "queue"}``, plus ``"device"`` to subscribe as a device:
``/subscribe/<queue> device=<id>``), authenticates with ``headers`` (or an ``auth_frame``
sent first), subscribes, prints ``{"event":"ready"}``, then counts messages until ``stop`` arrives
on stdin, ``expect`` messages have arrived, or ``timeout`` seconds pass; prints
``{"event":"result"}``. ``protocol`` "v1" uses the ``wsmq.v1`` subprotocol and acks every message
(what one read of the socket brought in one bulk ``/ack`` frame; ``"ack_batch": false`` sends one
frame per message); "legacy" reads ``{"message": body}``. Bodies start with the publish time
(``"<epoch ms>|"``), from which each message's latency is taken. ``emit_each`` prints an
``{"event":"msg"}`` per message (idle-latency runs). ``since <epoch ms>`` on stdin starts the
count over (answered ``{"event":"since"}``): from then on messages published before that time
(a warm-up) are neither counted nor sampled.

Raw sockets, not ``wsmq.client``, on purpose: the load generator measures the server and speaks
the protocol of each compared system (legacy, v1 with hand-batched acks, peers without wsmq).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

SERIES_STEP = 0.1  # seconds between samples of the cumulative count


class Counter:
    def __init__(self, config: dict[str, Any]) -> None:
        self.count = 0
        self.bad = 0
        self.latencies: list[float] = []
        self.keep_latency = bool(config.get("latency", False))
        self.emit_each = bool(config.get("emit_each", False))
        self.expect = int(config.get("expect") or 0)
        self.done = asyncio.Event()
        self.first_t = 0.0
        self.last_t = 0.0
        self.since_ms = float(config.get("since") or 0.0)

    def restart(self, since_ms: float) -> None:
        """Count only messages published at or after ``since_ms`` from now on."""
        self.since_ms = since_ms
        self.count = 0
        self.latencies.clear()

    def record(self, body: str) -> None:
        now = time.time()
        if self.since_ms:
            try:
                if float(body[: body.index("|")]) < self.since_ms:
                    return
            except ValueError:
                pass
        self.count += 1
        if self.count == 1:
            self.first_t = now
        self.last_t = now
        if self.keep_latency or self.emit_each:
            try:
                latency = now * 1000.0 - float(body[: body.index("|")])
            except ValueError:
                self.bad += 1
                return
            if self.keep_latency:
                self.latencies.append(round(latency, 3))
            if self.emit_each:
                emit({"event": "msg", "latency_ms": latency})
        if self.expect and self.count >= self.expect:
            self.done.set()


class AckBatcher:
    """Acks the messages one read of the socket brought with one bulk ``/ack`` frame per queue.

    The flush is scheduled with ``call_soon``: aiohttp hands out the frames already buffered
    without yielding to the event loop, so it runs once the socket's buffer is empty.
    """

    MAX_IDS = 500

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pending: dict[str, list[str]] = {}
        self.scheduled = False
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, queue: str, msg_id: str) -> None:
        self.pending.setdefault(queue, []).append(msg_id)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        for queue, ids in pending.items():
            for i in range(0, len(ids), self.MAX_IDS):
                frame = f"/ack/{queue}/{','.join(ids[i : i + self.MAX_IDS])}"
                task = asyncio.ensure_future(self.ws.send_str(frame))
                self.tasks.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a closing socket: the run's result says what arrived


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_socket(
    ws: aiohttp.ClientWebSocketResponse,
    v1: bool,
    counter: Counter,
    errors: list[str],
    ack_batch: bool = True,
) -> None:
    acks = AckBatcher(ws) if ack_batch else None
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        try:
            frame = json.loads(msg.data)
        except ValueError:
            counter.bad += 1
            continue
        if frame.get("type") == "error" or "error" in frame:
            # A refused subscription would look like a slow system: fail the run loudly instead.
            error = str(frame.get("code") or frame.get("error") or frame)
            errors.append(error)
            emit({"event": "error", "message": f"server error frame: {error}: {msg.data[:200]}"})
            continue
        if v1:
            if frame.get("type") != "message":
                continue
            if acks is not None:
                acks.add(frame["queue"], frame["id"])
            else:
                await ws.send_str(f"/ack/{frame['queue']}/{frame['id']}")
        elif "message" not in frame:
            continue
        counter.record(str(frame["message"]))


async def open_socket(
    session: aiohttp.ClientSession, config: dict[str, Any], client: dict[str, str]
) -> aiohttp.ClientWebSocketResponse:
    v1 = config.get("protocol") == "v1"
    ws = await session.ws_connect(
        client["url"],
        headers=config.get("headers") or {},
        protocols=("wsmq.v1",) if v1 else (),
        heartbeat=None,
        autoping=True,
        max_msg_size=0,
    )
    if config.get("auth_frame"):
        await ws.send_str(str(config["auth_frame"]))
    return ws


async def subscribe(
    ws: aiohttp.ClientWebSocketResponse, queue: str, v1: bool, device: str | None = None
) -> None:
    await ws.send_str(
        f"/subscribe/{queue}" if device is None else f"/subscribe/{queue} device={device}"
    )
    if v1:  # wsmq confirms a subscription; legacy peers have no reply to wait for
        async with asyncio.timeout(10):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed while subscribing: {msg.type} {msg.data}")
                frame = json.loads(msg.data)
                if frame.get("type") == "subscribed":
                    return
                if frame.get("type") == "message":  # ack it so it does not hold the window
                    await ws.send_str(f"/ack/{frame['queue']}/{frame['id']}")
                if frame.get("type") == "error":
                    raise ConnectionError(f"subscribe {queue} refused: {frame}")


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def run(config: dict[str, Any]) -> None:
    v1 = config.get("protocol") == "v1"
    clients: list[dict[str, str]] = config["clients"]
    counter = Counter(config)
    errors: list[str] = []
    stdin = await stdin_lines()
    limit = asyncio.Semaphore(int(config.get("connect_concurrency", 64)))
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def connect(client: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
            async with limit:
                return await open_socket(session, config, client)

        started = time.perf_counter()
        sockets = await asyncio.gather(*(connect(c) for c in clients))
        connect_s = time.perf_counter() - started
        await asyncio.gather(
            *(
                subscribe(ws, c["queue"], v1, c.get("device"))
                for ws, c in zip(sockets, clients, strict=True)
            )
        )
        emit({"event": "ready", "connect_s": connect_s, "connections": len(sockets)})
        subscribed_t = time.time()
        ack_batch = bool(config.get("ack_batch", True))
        readers = [
            asyncio.create_task(read_socket(ws, v1, counter, errors, ack_batch)) for ws in sockets
        ]
        series: list[tuple[float, int]] = []

        async def sample() -> None:
            while True:
                series.append((time.time(), counter.count))
                await asyncio.sleep(SERIES_STEP)

        async def control() -> None:
            # "stop" ends the run; "expect N GRACE" ends it once N messages arrived, or GRACE
            # seconds later (the publisher is done: whatever has not arrived by then is late).
            while True:
                words = (await stdin.readline()).decode().split()
                if not words or words[0] == "stop":
                    return
                if words[0] == "since":
                    counter.restart(float(words[1]))
                    series.clear()
                    emit({"event": "since"})
                    continue
                if words[0] == "expect":
                    counter.expect = int(words[1])
                    if counter.count >= counter.expect:
                        return
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(float(words[2])):
                            await counter.done.wait()
                    return

        sampler = asyncio.create_task(sample())
        stop = asyncio.create_task(control())
        done = asyncio.create_task(counter.done.wait())
        timeout = config.get("timeout")
        await asyncio.wait({stop, done}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        series.append((time.time(), counter.count))
        for task in (sampler, stop, done, *readers):
            task.cancel()
        for ws in sockets:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await ws.close()
    emit(
        {
            "event": "result",
            "count": counter.count,
            "bad": counter.bad,
            "errors": errors[:10],
            "subscribed_t": subscribed_t,
            "first_t": counter.first_t,
            "last_t": counter.last_t,
            "series": series,
            "latencies": counter.latencies,
        }
    )


def main() -> int:
    arg = sys.argv[1]
    if arg.startswith("@"):  # a file written by bench.procs.loadgen (removed once read)
        path = Path(arg[1:])
        config = json.loads(path.read_text())
        path.unlink(missing_ok=True)
    else:
        config = json.loads(arg)
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())

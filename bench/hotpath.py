"""Hot-path measurement of the delivery engine (focused, reproducible; not the full benchmark).

Starts a private redis-server and measures, per ack mode (``legacy``: deleted once written;
``v1``: deleted on an immediate ``/ack``):

- **drain**: ``--n`` messages pre-loaded, then one engine delivers them to ``--subs`` in-memory
  subscribers; reports delivered msg/s (first subscribe to last delivery) and settled msg/s
  (until the queue is empty, i.e. every delete/ack reached Redis);
- **latency**: a publisher *process* sends at ``--rate`` msg/s for ``--seconds``; reports
  publish→deliver p50/p99 (the body carries the send time);
- **idle**: one message every 50 ms on an idle queue; p50/p99.

In-memory subscribers do what a socket session does on the hot path (encode the frame; v1:
one background ack task per message, at most 32 at once per socket, as ``Connection`` does).
``--server`` runs the same scenarios through a real ``wsmq`` node (``wsmq.gateway.serve`` in a
child process) and real aiohttp WebSocket clients on loopback (raw sockets, not ``wsmq.client``, on
purpose: this measures the server's hot path, not a client's). ``--profile`` profiles the drain
with pyinstrument (``pip install pyinstrument``) and prints the top of the profile.

Every scenario runs ``--repeat`` times (fresh queue each time); the median is printed::

    .venv/bin/python bench/hotpath.py                       # in-process, legacy + v1
    .venv/bin/python bench/hotpath.py --server --uvloop     # real server and sockets
    .venv/bin/python bench/hotpath.py --modes v1 --profile --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `wsmq` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import AckBatcher
from wsmq.engine.consumer import Subscription
from wsmq.engine.delivery import DeliveryEngine
from wsmq.protocol import wire as p
from wsmq.protocol.server_frames import encode_acked, encode_message
from wsmq.queue import Message, Queues
from wsmq.realtime.listener import RealtimeListener
from wsmq.testing.redisproc import RedisProcess

NS = "rsmq"
ACK_CONCURRENCY = 32  # Connection.MAX_CONCURRENT_ACKS


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def body(size: int) -> str:
    stamp = f"{time.time():.6f}|"
    return stamp + "x" * max(0, size - len(stamp))


def latency_ms(text: str) -> float:
    return (time.time() - float(text[: text.index("|")])) * 1000.0


# -- in-process subscribers ------------------------------------------------------------------


class MemSubscriber:
    """What a socket session does on the hot path, minus the socket."""

    def __init__(
        self,
        engine: DeliveryEngine,
        qname: str,
        ack_mode: bool,
        window: int,
        ack_concurrency: int = ACK_CONCURRENCY,
    ) -> None:
        self.engine = engine
        self.qname = qname
        self.ack_mode = ack_mode
        self.cap = window
        self.mode = p.Mode.V1 if ack_mode else p.Mode.LEGACY
        self.handle: Subscription | None = None
        self.count = 0
        self.acked = 0
        self.latencies: list[float] | None = None
        self.on_count: Callable[[], None] = lambda: None
        self.frames = 0
        self._acks = asyncio.Semaphore(ack_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def window(self) -> int:
        held = self.handle.unacked if self.handle is not None else 0
        return max(0, self.cap - held)

    async def deliver(self, msg: Message) -> bool:
        frame = encode_message(self.mode, self.qname, msg.id, msg.rc, msg.sent, msg.message)
        self.frames += len(frame)
        if self.latencies is not None:
            self.latencies.append(latency_ms(msg.message))
        self.count += 1
        if self.ack_mode:
            task = asyncio.get_running_loop().create_task(self._ack(msg.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.on_count()
        return True

    async def _ack(self, msg_id: str) -> None:
        async with self._acks:
            assert self.handle is not None
            if await self.engine.ack(self.handle, msg_id):
                self.acked += 1
                encode_acked(self.qname, msg_id)


class CallCounter:
    """Count the engine's Redis round trips (each ``Queues`` method below is one)."""

    METHODS = (
        "receive_with_next",
        "delete_messages",
        "change_messages_visibility",
        "next_visible_at",
        "visible_counts",
    )

    def __init__(self, queues: Queues) -> None:
        self.calls = dict.fromkeys(self.METHODS, 0)
        for name in self.METHODS:
            setattr(queues, name, self._wrap(name, getattr(queues, name)))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await fn(*args, **kwargs)

        return counted

    def total(self) -> int:
        return sum(self.calls.values())


async def _preload(queues: Queues, qname: str, n: int, size: int) -> None:
    chunk = 500
    for i in range(0, n, chunk):
        await queues.send_messages(qname, [body(size)] * min(chunk, n - i))


async def _wait_empty(queues: Queues, qname: str, within: float) -> None:
    async with asyncio.timeout(within):
        # A Redis-side condition (deletes applied): nothing to await but polling.
        while (await queues.get_queue_attributes(qname)).msgs:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


class InProcess:
    """One engine in this process against the private Redis."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.url = url
        self.args = args

    async def drain(self, ack_mode: bool, qname: str, profile: bool = False) -> dict[str, float]:
        a = self.args
        queues = Queues.from_url(self.url, ns=NS, realtime=True)
        await queues.create_queue(qname, vt=60)
        await _preload(queues, qname, a.n, a.size)
        listener = RealtimeListener(self.url, NS)
        engine = DeliveryEngine(queues, listener, batch_size=a.batch)
        await engine.start()
        done = asyncio.Event()
        subs = [
            MemSubscriber(engine, qname, ack_mode, a.window, a.ack_concurrency)
            for _ in range(a.subs)
        ]
        total = 0

        def counted() -> None:
            nonlocal total
            total += 1
            if total >= a.n:
                done.set()

        profiler = _profiler() if profile else None
        for s in subs:
            s.on_count = counted
        counter = CallCounter(queues)
        started = time.perf_counter()
        if profiler is not None:
            profiler.start()
        for s in subs:
            s.handle = await engine.subscribe(qname, s)
        async with asyncio.timeout(a.timeout):
            await done.wait()
        delivered = time.perf_counter() - started
        await _wait_empty(queues, qname, a.timeout)
        settled = time.perf_counter() - started
        if profiler is not None:
            profiler.stop()
            _print_profile(profiler)
        rt = counter.total() / a.n
        await engine.stop()
        await listener.close()
        await queues.delete_queue(qname)
        await queues.close()
        return {
            "delivered_per_s": a.n / delivered,
            "settled_per_s": a.n / settled,
            "redis_calls_per_msg": rt,
            "msgs_per_receive": a.n / max(1, counter.calls["receive_with_next"]),
            "msgs_per_delete": a.n / max(1, counter.calls["delete_messages"]),
        }

    async def latency(
        self, ack_mode: bool, qname: str, rate: float, profile: bool = False
    ) -> dict[str, float]:
        a = self.args
        queues = Queues.from_url(self.url, ns=NS, realtime=True)
        await queues.create_queue(qname, vt=60)
        listener = RealtimeListener(self.url, NS)
        engine = DeliveryEngine(queues, listener, batch_size=a.batch)
        await engine.start()
        sub = MemSubscriber(engine, qname, ack_mode, a.window, a.ack_concurrency)
        sub.latencies = []
        sub.handle = await engine.subscribe(qname, sub)
        count = int(rate * a.seconds) if rate else a.idle_count
        done = asyncio.Event()
        sub.on_count = lambda: done.set() if sub.count >= count else None
        profiler = _profiler() if profile else None
        if profiler is not None:
            profiler.start()
        counter = CallCounter(queues)
        await run_publisher(self.url, qname, rate, count, a.size)
        async with asyncio.timeout(a.timeout):
            await done.wait()
        if profiler is not None:
            profiler.stop()
            _print_profile(profiler)
        rt = counter.total() / count
        await engine.stop()
        await listener.close()
        await queues.delete_queue(qname)
        await queues.close()
        lat = sub.latencies[len(sub.latencies) // 10 :]  # skip the warm-up tenth
        return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "redis_calls_per_msg": rt}


# -- publisher process -------------------------------------------------------------------------


def _publisher_main(url: str, qname: str, rate: float, count: int, size: int) -> None:
    """Offer ``rate`` msg/s: every 2 ms the messages now due go out in one batch send (one
    realtime notification per batch), so one Python process can offer 5k+/s on a busy machine;
    ``rate`` 0: one message every 50 ms (idle latency)."""

    async def main() -> None:
        queues = Queues.from_url(url, ns=NS, realtime=True)
        start = time.perf_counter()
        sent = 0
        tick = 0.002 if rate else 0.05
        while sent < count:
            elapsed = time.perf_counter() - start
            due = min(count, int(elapsed * rate) + 1, sent + 500) if rate else sent + 1
            if due > sent:
                if due - sent == 1:
                    await queues.send_message(qname, body(size))
                else:
                    await queues.send_messages(qname, [body(size) for _ in range(due - sent)])
                sent = due
            await asyncio.sleep(tick)
        await queues.close()

    asyncio.run(main())


async def run_publisher(url: str, qname: str, rate: float, count: int, size: int) -> None:
    proc = mp.get_context("spawn").Process(
        target=_publisher_main, args=(url, qname, rate, count, size), daemon=True
    )
    proc.start()
    await asyncio.to_thread(proc.join)


# -- real server -------------------------------------------------------------------------------


def _serve_main(
    url: str,
    port: int,
    window: int,
    batch: int,
    use_uvloop: bool,
    profile: bool = False,
    ack_concurrency: int = 0,
) -> None:
    import signal

    from wsmq.gateway.server import serve

    if ack_concurrency:  # experiment: Connection bounds the acks it runs at once per socket
        from wsmq.gateway.connection import Connection

        Connection.MAX_CONCURRENT_ACKS = ack_concurrency

    async def authenticate(_request: Any) -> dict[str, Any]:
        return {"user_id": "bench", "queues": ["*"], "publish": []}

    async def main() -> None:
        gw = await serve(
            authenticate=authenticate,
            authorize=lambda user, qname, action: True,
            redis_url=url,
            host="127.0.0.1",
            port=port,
            window=window,
            batch_size=batch,
            rate_limit=1_000_000,
            rate_burst=1_000_000,
            heartbeat=0,
            max_connections_per_user=0,  # everyone is "bench" (bench.fanout opens 100 sockets)
        )
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        profiler = _profiler() if profile else None
        if profiler is not None:
            profiler.start()
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            if profiler is not None:
                profiler.stop()
                _print_profile(profiler, file=sys.stderr)
            await gw.close()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _client_proc_main(
    port: int, qname: str, ack_mode: bool, total: int, counter: Any, ready: Any
) -> None:
    """One WebSocket client process of a ``--client-procs`` drain (competing consumers).

    All processes count into one shared counter and stop once it reaches ``total`` (v1: once
    their own acks are confirmed too, since closing releases unacked messages).
    """

    async def main() -> None:
        import aiohttp

        protocols = (p.SUBPROTOCOL,) if ack_mode else ()
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"ws://127.0.0.1:{port}/", protocols=protocols, max_msg_size=0
            ) as ws,
        ):
            await ws.send_str(f"/subscribe/{qname}")
            if not ack_mode:
                ready.put(1)
            unconfirmed = 0
            while counter.value < total or unconfirmed:
                try:
                    msg = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"socket closed: {msg!r}")
                data = json.loads(msg.data)
                if ack_mode:
                    kind = data.get("type")
                    if kind == "subscribed":
                        ready.put(1)
                    elif kind == "acked":
                        unconfirmed -= 1
                    if kind != "message":
                        continue
                    await ws.send_str(f"/ack/{qname}/{data['id']}")
                    unconfirmed += 1
                with counter.get_lock():
                    counter.value += 1

    asyncio.run(main())


class RealServer:
    """A wsmq node in a child process; aiohttp WebSocket clients here (or in processes)."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        from wsmq.testing.redisproc import free_port

        self.url = url
        self.args = args
        self.port = free_port()
        root = str(Path(__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {root!r}); from bench.hotpath import _serve_main; "
            f"_serve_main({url!r}, {self.port}, {args.window}, {args.batch}, {args.uvloop!r}, "
            f"{args.profile!r}, {args.server_ack_concurrency})"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError("server did not start")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    async def _client(
        self, ack_mode: bool, qname: str, want: int, lat: list[float] | None, ready: asyncio.Event
    ) -> int:
        import aiohttp

        protocols = (p.SUBPROTOCOL,) if ack_mode else ()
        got = 0
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"ws://127.0.0.1:{self.port}/", protocols=protocols, max_msg_size=0
            ) as ws,
        ):
            await ws.send_str(f"/subscribe/{qname}")
            if not ack_mode:
                ready.set()  # legacy: no `subscribed` reply
            acked = 0
            bulk = AckBatcher(ws) if self.args.bulk_acks else None
            # v1: close only once every ack is confirmed (closing releases unacked messages).
            while got < want or (ack_mode and acked < got):
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"socket closed: {msg!r}")
                data = json.loads(msg.data)
                if ack_mode:
                    kind = data.get("type")
                    if kind == "subscribed":
                        ready.set()
                    elif kind == "acked":
                        acked += 1
                    if kind != "message" or got >= want:
                        continue
                    if bulk is not None:
                        bulk.add(qname, data["id"])
                    else:
                        await ws.send_str(f"/ack/{qname}/{data['id']}")
                got += 1
                if lat is not None:
                    lat.append(latency_ms(data["message"]))
        return got

    async def drain(self, ack_mode: bool, qname: str, profile: bool = False) -> dict[str, float]:
        if self.args.client_procs:
            return await self._drain_procs(ack_mode, qname)
        a = self.args
        queues = Queues.from_url(self.url, ns=NS, realtime=True)
        await queues.create_queue(qname, vt=60)
        await _preload(queues, qname, a.n, a.size)
        per = [a.n // a.subs + (1 if i < a.n % a.subs else 0) for i in range(a.subs)]
        started = time.perf_counter()
        readies = [asyncio.Event() for _ in per]
        async with asyncio.timeout(a.timeout):
            # Competing consumers: each client stops once the total is reached.
            clients = [
                self._client(ack_mode, qname, k, None, r) for k, r in zip(per, readies, strict=True)
            ]
            results = await asyncio.gather(*clients)
        delivered = time.perf_counter() - started
        assert sum(results) >= a.n
        await _wait_empty(queues, qname, a.timeout)
        settled = time.perf_counter() - started
        await queues.delete_queue(qname)
        await queues.close()
        return {"delivered_per_s": a.n / delivered, "settled_per_s": a.n / settled}

    async def _drain_procs(self, ack_mode: bool, qname: str) -> dict[str, float]:
        """``--client-procs K``: K client processes subscribe first; the clock starts when the
        messages are loaded (batch sends, so loading overlaps the first deliveries)."""
        a = self.args
        ctx = mp.get_context("spawn")
        counter = ctx.Value("l", 0)
        ready = ctx.Queue()
        queues = Queues.from_url(self.url, ns=NS, realtime=True)
        await queues.create_queue(qname, vt=60)
        procs = [
            ctx.Process(
                target=_client_proc_main,
                args=(self.port, qname, ack_mode, a.n, counter, ready),
                daemon=True,
            )
            for _ in range(a.client_procs)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            await asyncio.to_thread(ready.get, True, 30)
        await asyncio.sleep(0.2)  # the node's consumer confirms its realtime subscription
        started = time.perf_counter()
        await _preload(queues, qname, a.n, a.size)
        async with asyncio.timeout(a.timeout):
            while counter.value < a.n:  # noqa: ASYNC110 - a counter in shared memory
                await asyncio.sleep(0.002)
        delivered = time.perf_counter() - started
        await _wait_empty(queues, qname, a.timeout)
        settled = time.perf_counter() - started
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
        await queues.delete_queue(qname)
        await queues.close()
        return {"delivered_per_s": a.n / delivered, "settled_per_s": a.n / settled}

    async def latency(self, ack_mode: bool, qname: str, rate: float) -> dict[str, float]:
        a = self.args
        queues = Queues.from_url(self.url, ns=NS, realtime=True)
        await queues.create_queue(qname, vt=60)
        count = int(rate * a.seconds) if rate else a.idle_count
        lat: list[float] = []
        ready = asyncio.Event()
        client = asyncio.create_task(self._client(ack_mode, qname, count, lat, ready))
        async with asyncio.timeout(10):
            await ready.wait()
        await asyncio.sleep(0.2)  # the node's consumer confirms its realtime subscription
        await run_publisher(self.url, qname, rate, count, a.size)
        async with asyncio.timeout(a.timeout):
            await client
        await queues.delete_queue(qname)
        await queues.close()
        lat = lat[len(lat) // 10 :]
        return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99)}


# -- profiling, driver -------------------------------------------------------------------------


def _profiler() -> Any:
    try:
        from pyinstrument import Profiler
    except ImportError:
        sys.exit("--profile needs pyinstrument: .venv/bin/pip install pyinstrument")
    return Profiler(interval=0.0005, async_mode="disabled")


def _print_profile(profiler: Any, file: Any = None) -> None:
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    lines = text.splitlines()
    print("\n".join(lines[:90]), file=file or sys.stdout, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis = RedisProcess().start()
    results: dict[str, Any] = {}
    runner: InProcess | RealServer | None = None
    try:
        runner = RealServer(redis.url, args) if args.server else InProcess(redis.url, args)
        run_no = 0
        for mode in args.modes:
            ack = mode == "v1"
            rates = {"drain": None, "latency": args.rate, "idle": 0.0}
            scenarios = [(name, rates[name]) for name in args.scenarios]
            for name, rate in scenarios:
                samples: list[dict[str, float]] = []
                for _ in range(args.repeat):
                    run_no += 1
                    qname = f"hot{run_no}"
                    if rate is None:
                        samples.append(await runner.drain(ack, qname))
                    else:
                        samples.append(await runner.latency(ack, qname, rate))
                median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                results[f"{name}.{mode}"] = median
                shown = "  ".join(
                    f"{k}={v:,.0f}" if k.endswith("_per_s") else f"{k}={v:.2f}"
                    for k, v in median.items()
                )
                runs = " | ".join(
                    ",".join(f"{v:.0f}" if k.endswith("_per_s") else f"{v:.2f}"
                             for k, v in s.items())
                    for s in samples
                )  # fmt: skip
                print(f"{name:8} {mode:6} {shown}   (runs: {runs})", flush=True)
        if args.profile and isinstance(runner, InProcess):
            for mode in args.modes:
                if "drain" in args.scenarios:
                    print(f"\n== profile: drain {mode} ==")
                    await runner.drain(mode == "v1", f"prof{mode}", profile=True)
                if "latency" in args.scenarios:
                    print(f"\n== profile: latency {mode} at {args.rate:g}/s ==")
                    await runner.latency(mode == "v1", f"plat{mode}", args.rate, profile=True)
    finally:
        if isinstance(runner, RealServer):
            runner.close()
        redis.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", type=lambda s: s.split(","), default=["legacy", "v1"])
    ap.add_argument(
        "--scenarios", type=lambda s: s.split(","), default=["drain", "latency", "idle"]
    )
    ap.add_argument("--n", type=int, default=20000, help="messages for the drain")
    ap.add_argument("--size", type=int, default=100, help="body bytes")
    ap.add_argument("--window", type=int, default=100, help="per-subscription window")
    ap.add_argument("--batch", type=int, default=100, help="engine batch_size")
    ap.add_argument("--subs", type=int, default=1, help="subscribers of the drained queue")
    ap.add_argument(
        "--client-procs",
        type=int,
        default=0,
        help="--server drain: this many WebSocket client processes (competing consumers)",
    )
    ap.add_argument("--rate", type=float, default=5000.0, help="offered msg/s for latency")
    ap.add_argument("--seconds", type=float, default=3.0, help="latency run length")
    ap.add_argument("--idle-count", type=int, default=60, help="messages of the idle run")
    ap.add_argument(
        "--ack-concurrency",
        type=int,
        default=ACK_CONCURRENCY,
        help="in-process v1: acks of one socket executed at once (Connection uses 32)",
    )
    ap.add_argument(
        "--bulk-acks",
        action="store_true",
        help="--server: the v1 client acks what one socket read brought with one /ack frame",
    )
    ap.add_argument(
        "--server-ack-concurrency",
        type=int,
        default=0,
        help="--server: override Connection.MAX_CONCURRENT_ACKS (0: keep its default)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--server", action="store_true", help="real server + WebSocket clients")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    ap.add_argument("--profile", action="store_true", help="pyinstrument the drain")
    ap.add_argument("--json", type=Path, help="write the medians here")
    args = ap.parse_args(argv)
    print(
        f"# hotpath: n={args.n} size={args.size} window={args.window} batch={args.batch} "
        f"subs={args.subs} rate={args.rate:g} server={args.server} uvloop={args.uvloop} "
        f"repeat={args.repeat} load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.uvloop:
        import uvloop

        results = uvloop.run(run(args))
    else:
        results = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

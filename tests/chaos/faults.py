"""One bounded chaos run: traffic through real gateway nodes while one fault strikes.

:func:`run_fault` starts a Redis deployment, ``nodes`` ``wsmq serve`` subprocesses, acking v1
clients spread over the nodes (competing consumers on each queue) and a publisher, waits until
traffic flows, injects the fault ``repeats`` times, keeps publishing ``after_seconds``, then
waits (bounded) until every sent id was delivered and every queue is empty, and returns a
:class:`~tests.chaos.harness.ChaosReport`. Faults (see docs/chaos.md):

``node-kill``        SIGKILL a gateway node holding clients (a replacement node is started).
``node-restart``     SIGTERM a gateway node (graceful shutdown) and start a replacement.
``redis-restart``    SIGKILL redis-server (AOF, appendfsync always), down 1 s, start it again.
``redis-conn-kill``  ``CLIENT KILL`` every connection of the nodes and publishers to Redis.
``conn-cut``         reset every client WebSocket (TCP proxy in front of each node aborts).
``conn-blackhole``   every client WebSocket silently stops passing bytes (only heartbeats see it).
``sentinel-failover`` SIGKILL the Sentinel-managed master; the replica is promoted.
``cluster-failover`` SIGKILL the Cluster master serving a chaos queue; its replica takes over.
``device-node-kill`` as ``node-kill``, the clients being devices of one fan-out queue, each
                     checked for every message (``devices.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from wsmq.testing.nodes import NodeProcess

from .backends import ClusterBackend, SentinelBackend, StandaloneBackend, kill_clients
from .harness import ChaosReport, Consumer, Ledger, Publisher, check
from .procs import CutProxy, NodeGroup, make_users

__all__ = ["FAULTS", "ChaosConfig", "ChaosRun", "run_fault"]

FAULTS = (
    "node-kill",
    "node-restart",
    "redis-restart",
    "redis-conn-kill",
    "conn-cut",
    "conn-blackhole",
    "sentinel-failover",
    "cluster-failover",
    "device-node-kill",
)


@dataclass(frozen=True)
class ChaosConfig:
    """Size of one run; :meth:`full` is what ``scripts/chaos`` uses."""

    nodes: int = 2
    consumers: int = 4
    queues: int = 2
    rate: float = 150.0  # messages/s from the publisher
    vt: int = 2  # visibility timeout of the chaos queues (s)
    window: int = 20  # unacked messages per subscription
    warmup: int = 60  # deliveries before the first fault
    repeats: int = 1  # times the fault strikes
    between: int = 60  # deliveries between two strikes
    ack_delay: float = 0.2  # clients ack after a random 0..ack_delay s
    after_seconds: float = 1.5  # publishing after the last strike
    drain_timeout: float = 30.0
    setup_timeout: float = 60.0

    @classmethod
    def full(cls) -> ChaosConfig:
        return cls(
            nodes=3, consumers=12, queues=4, rate=400.0, warmup=1000, repeats=3, between=800,
            after_seconds=5.0, drain_timeout=90.0,
        )  # fmt: skip

    def duplicate_bound(self) -> int:
        """Most deliveries a fault can legitimately repeat: every subscription's full window,
        for every strike (each consumer holds one subscription)."""
        return self.window * self.consumers * self.repeats


@dataclass
class ChaosRun:
    """The live pieces of a run (handed to the fault)."""

    fault: str
    config: ChaosConfig
    backend: Any
    group: NodeGroup
    urls: list[str]  # what the consumers connect to: the nodes, or the proxies in front of them
    proxies: list[CutProxy]
    consumers: list[Consumer]
    publisher: Publisher
    qnames: list[str]


async def _wait(cond: Callable[[], bool], event: asyncio.Event, timeout: float, what: str) -> None:
    """Wait until ``cond()`` holds, re-checking whenever ``event`` fires (set on progress)."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                event.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await event.wait()
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def _queues_empty(run: ChaosRun, q: Any) -> bool:
    for qname in run.qnames:
        attrs = await q.get_queue_attributes(qname)
        if attrs.msgs:
            return False
    return True


async def _restart_node(node: NodeProcess) -> None:
    """Capacity comes back, as an orchestrator would do: the node again, on its own port, so
    the consumers' fixed node lists (a client is given its nodes once) reach it again."""
    await node.start()


def _busiest(run: ChaosRun) -> NodeProcess:
    """The live node serving the most clients right now (a fresh replacement may be idle)."""
    load = Counter(c.last_url for c in run.consumers if c.connected.is_set())
    return max((n for n in run.group.nodes if n.alive), key=lambda n: load[n.url])


async def _strike(run: ChaosRun, strike: int) -> asyncio.Task[None] | None:
    """Inflict the fault once; returns work that may go on after the fault ended."""
    fault = run.fault
    if fault == "node-kill":
        victim = _busiest(run)
        await victim.kill()  # its URL stays in the clients' list: they find out the hard way
        if strike + 1 < run.config.repeats:  # the next strike needs a survivor again
            return asyncio.create_task(_restart_node(victim))
    elif fault == "node-restart":
        victim = _busiest(run)
        code = await victim.terminate()
        if code != 0:
            raise AssertionError(f"graceful shutdown exited {code}: {victim.log_tail()}")
        return asyncio.create_task(_restart_node(victim))  # a rolling restart brings it back
    elif fault == "redis-restart":
        await run.backend.restart(1.0)
    elif fault == "redis-conn-kill":
        await asyncio.to_thread(kill_clients, run.backend.admin_ports())
    elif fault == "conn-cut":
        for proxy in run.proxies:
            proxy.cut()
    elif fault == "conn-blackhole":
        for proxy in run.proxies:
            proxy.blackhole()
    elif fault == "sentinel-failover":
        run.publisher.wait_replicas = 1
        await run.backend.failover()
        run.publisher.wait_replicas = 0  # the old master is dead: no replica left to wait for
    elif fault == "cluster-failover":
        await run.backend.failover(f"{{{run.qnames[0]}}}", run.publisher)
    else:  # pragma: no cover - FAULTS lists every name
        raise ValueError(f"unknown fault {fault!r}")
    return None


def _backend_for(fault: str) -> Any:
    if fault == "sentinel-failover":
        return SentinelBackend()
    if fault == "cluster-failover":
        return ClusterBackend()
    return StandaloneBackend()


async def run_fault(
    fault: str, config: ChaosConfig | None = None, workdir: Path | None = None
) -> ChaosReport:
    """Run ``fault`` under traffic and return the report (raises ``AssertionError`` when a
    bounded wait runs out: a stuck consumer or a lost message)."""
    config = config or ChaosConfig()
    if fault in ("node-kill", "node-restart", "device-node-kill") and config.nodes < 2:
        config = replace(config, nodes=2)
    if fault in ("sentinel-failover", "cluster-failover"):
        config = replace(config, repeats=1)  # the promoted replica has no replica of its own
    if fault in LONG_VT_FAULTS:
        # A vt well above reconnect (conn-cut) or heartbeat detection (~3 s, conn-blackhole)
        # time: recovering before it proves the node released the dead socket's messages.
        config = replace(config, vt=max(config.vt, LONG_VT))
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsmq-chaos-")))
        backend = _backend_for(fault)
        stack.callback(backend.cleanup)
        await asyncio.to_thread(backend.start)
        if fault == "device-node-kill":
            from .devices import run_devices

            return await run_devices(config, backend, workdir)
        return await _run(fault, config, backend, workdir)
    raise AssertionError("unreachable")  # pragma: no cover - mypy: ExitStack may swallow


async def _run(fault: str, config: ChaosConfig, backend: Any, workdir: Path) -> ChaosReport:
    qnames = [f"chaos{i}" for i in range(config.queues)]
    queues = backend.queues()
    ledger = Ledger()
    progress = ledger.progress
    group = NodeGroup(
        backend.url, workdir / "users.json", workdir, ("--window", str(config.window))
    )
    proxies: list[CutProxy] = []
    consumers: list[Consumer] = []
    tasks: list[asyncio.Task[None]] = []
    # A connect or handshake that hangs fails in 5 s (the client then tries the next node).
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=5))
    try:
        async with asyncio.timeout(config.setup_timeout):
            for qname in qnames:
                await queues.create_queue(qname, vt=config.vt)
            creds = await make_users(workdir / "users.json", config.consumers, queues=qnames)
            await group.start(config.nodes)
            urls = list(group.urls)
            if fault in ("conn-cut", "conn-blackhole"):
                proxies = [await CutProxy(node.port).start() for node in group.nodes]
                urls = [p.url_for(n.url) for p, n in zip(proxies, group.nodes, strict=True)]
        consumers = [
            Consumer(
                http,
                cred,
                urls,
                [qnames[i % len(qnames)]],
                ledger,
                start=i,
                ack_delay=config.ack_delay,
            )
            for i, cred in enumerate(creds)
        ]
        publisher = Publisher(queues, qnames, ledger, rate=config.rate)
        run = ChaosRun(fault, config, backend, group, urls, proxies, consumers, publisher, qnames)
        tasks = [asyncio.create_task(c.run()) for c in consumers]
        await _wait_all_connected(consumers, 20.0)
        publishing = asyncio.create_task(publisher.run())
        tasks.append(publishing)
        await _wait(lambda: len(ledger.deliveries) >= config.warmup, progress, 30.0, "warm-up")
        fault_end = time.monotonic()
        for strike in range(config.repeats):
            if strike:
                target = len(ledger.deliveries) + config.between

                def enough(target: int = target) -> bool:
                    return len(ledger.deliveries) >= target

                await _wait(enough, progress, 60.0, "traffic between strikes")
            aftermath = await _strike(run, strike)
            fault_end = time.monotonic()
            if aftermath is not None:
                tasks.insert(0, aftermath)
                await aftermath
        await asyncio.sleep(config.after_seconds)  # traffic through the recovery, not a sync
        publisher.stop.set()
        try:
            await asyncio.wait_for(publishing, 30)  # a send may be retrying through an outage
        except TimeoutError:
            raise AssertionError("the publisher could not send for 30 s after the fault") from None
        stopped = time.monotonic()
        await _wait(ledger.all_delivered, progress, config.drain_timeout, "every id delivered")
        async with asyncio.timeout(config.drain_timeout):
            while not await _queues_empty(run, queues):
                await asyncio.sleep(0.05)  # external state (Redis): bounded poll
        drain = time.monotonic() - stopped
        await _wait_all_connected(consumers, 10.0)  # nobody is stuck disconnected
        reconnects = sum(c.connections for c in consumers) - len(consumers)
        report = check(ledger, fault, fault_end, drain_seconds=drain, reconnects=reconnects)
        return replace(report, handoffs=await _handoffs_taken(http, group))
    finally:
        for consumer in consumers:
            consumer.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for proxy in proxies:
            await proxy.aclose()
        await http.close()
        await group.aclose()
        with contextlib.suppress(Exception):
            await queues.close()


async def _handoffs_taken(http: aiohttp.ClientSession, group: NodeGroup) -> int:
    """``wsmq_handoffs_total{result="taken"}`` summed over the live nodes' /metrics."""
    total = 0.0
    for node in group.nodes:
        if not node.alive:
            continue
        async with http.get(f"{node.http_url}/metrics") as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith('wsmq_handoffs_total{result="taken"}'):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def _wait_all_connected(consumers: list[Consumer], timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(c.connected.wait() for c in consumers))
    except TimeoutError:
        stuck = [
            (c.cred.user_id, c.last_url, c.errors[-3:])
            for c in consumers
            if not c.connected.is_set()
        ]
        raise AssertionError(f"consumers not connected after {timeout}s: {stuck}") from None


# Faults where a confirmed ack may still be followed by a redelivery: the ack was queued while
# Redis was unreachable (applied when it is back, maybe after the vt expired), or the delete
# reached a master that died before replicating it. Those messages were still in flight.
ACKED_REDELIVERY_OK = frozenset(
    {"redis-restart", "redis-conn-kill", "sentinel-failover", "cluster-failover"}
)
# Seconds past the queue's vt within which a fault must have fully recovered.
RECOVERY_SLACK = {
    "node-restart": -4.0,
    "conn-cut": -4.0,
    "conn-blackhole": -3.0,
    "sentinel-failover": 15.0,
    "cluster-failover": 15.0,
}
LONG_VT = 10
LONG_VT_FAULTS = frozenset({"node-restart", "conn-cut", "conn-blackhole"})


def recovery_bound(fault: str, config: ChaosConfig) -> float:
    """Upper bound of ``recovery_seconds``: a dead socket's messages and a gracefully stopping
    node's are released at once, so ``conn-cut``/``node-restart`` (6 s) and ``conn-blackhole``
    (7 s, heartbeats must find the dead peers first) recover well before their 10 s vt; a
    killed node's messages come back after the vt."""
    vt = max(config.vt, LONG_VT) if fault in LONG_VT_FAULTS else config.vt
    return vt + RECOVERY_SLACK.get(fault, 8.0)


def problems(report: ChaosReport, config: ChaosConfig) -> list[str]:
    """What is wrong with a run (empty: at-least-once held, bounded duplicates and recovery)."""
    out = []
    if report.lost:
        out.append(f"{report.lost} sent ids never delivered")
    if report.unknown:
        out.append(f"{report.unknown} delivered ids nobody sent")
    if report.duplicates > config.duplicate_bound():
        out.append(f"{report.duplicates} duplicates > bound {config.duplicate_bound()}")
    if report.redelivered_after_ack and report.fault not in ACKED_REDELIVERY_OK:
        out.append(f"{report.redelivered_after_ack} redelivered after a confirmed ack")
    bound = recovery_bound(report.fault, config)
    if report.recovery_seconds > bound:
        out.append(f"recovery {report.recovery_seconds:.2f}s > bound {bound:.1f}s")
    if report.resume_seconds > bound:
        out.append(f"resume {report.resume_seconds:.2f}s > bound {bound:.1f}s")
    return out

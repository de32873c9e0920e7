"""The ``device-node-kill`` chaos run: every device of a fan-out queue gets every message while
a gateway node is SIGKILLed (docs/delivery.md, Devices; docs/chaos.md).

One queue, ``consumers`` clients each subscribed as its own device (``device=dev<i>``), spread
over ``nodes`` ``wsmq serve`` subprocesses. The publisher starts once every device is
registered; the node serving the most devices is killed (``repeats`` times, restarted between
strikes). Accounting is **per device**: each device has its own :class:`Ledger` of deliveries
and is checked against everything sent, as if it were the only consumer; the run's report adds
them up (``lost`` over all devices, ``delivered_unique`` of the device that saw the fewest,
the worst recovery).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from wsmq.protocol.names import inbox_name
from wsmq.testing.nodes import NodeProcess

from .harness import ChaosReport, Consumer, Ledger, Publisher, check
from .procs import NodeGroup, make_users

__all__ = ["FAULT", "merge_reports", "run_devices"]

FAULT = "device-node-kill"


def merge_reports(reports: list[ChaosReport]) -> ChaosReport:
    """One report for the run from one per device (pure)."""
    first = reports[0]
    return ChaosReport(
        fault=first.fault,
        sent=first.sent,
        delivered_unique=min(r.delivered_unique for r in reports),
        duplicates=sum(r.duplicates for r in reports),
        lost=sum(r.lost for r in reports),
        recovery_seconds=max(r.recovery_seconds for r in reports),
        resume_seconds=max(r.resume_seconds for r in reports),
        redelivered_after_ack=sum(r.redelivered_after_ack for r in reports),
        unknown=sum(r.unknown for r in reports),
        ambiguous_extra=sum(r.ambiguous_extra for r in reports),
        send_errors=first.send_errors,
        drain_seconds=first.drain_seconds,
        reconnects=first.reconnects,
    )


async def _wait(cond: Any, event: asyncio.Event, timeout: float, what: str) -> None:
    from .faults import _wait as wait

    await wait(cond, event, timeout, what)


async def run_devices(config: Any, backend: Any, workdir: Path) -> ChaosReport:
    """Run ``device-node-kill`` (``config``: a :class:`~tests.chaos.faults.ChaosConfig`)."""
    qname = "chaosdev"
    devices = [f"dev{i}" for i in range(config.consumers)]
    queues = backend.queues()
    progress = asyncio.Event()  # shared: any device's delivery wakes the waits
    sent = Ledger(progress=asyncio.Event())
    ledgers = {d: Ledger(progress=progress) for d in devices}
    group = NodeGroup(
        backend.url, workdir / "users.json", workdir, ("--window", str(config.window))
    )
    consumers: list[Consumer] = []
    tasks: list[asyncio.Task[None]] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=5))

    def deliveries() -> int:
        return sum(len(ledger.deliveries) for ledger in ledgers.values())

    try:
        async with asyncio.timeout(config.setup_timeout):
            await queues.create_queue(qname, vt=config.vt)
            creds = await make_users(workdir / "users.json", len(devices), queues=[qname])
            await group.start(config.nodes)
        urls = list(group.urls)
        consumers = [
            Consumer(http, cred, urls, [qname], ledgers[device], start=i,
                     ack_delay=config.ack_delay, device=device)
            for i, (cred, device) in enumerate(zip(creds, devices, strict=True))
        ]  # fmt: skip
        tasks = [asyncio.create_task(c.run()) for c in consumers]
        # A device gets the messages sent after it registered: publish once all are.
        async with asyncio.timeout(20):
            # (every device registered; the registry also holds the shared inbox "~")
            while None in await queues.redis.zmscore(queues.keys.devices(qname), devices):
                await asyncio.sleep(0.02)  # external state (Redis): bounded poll
        publisher = Publisher(queues, [qname], sent, rate=config.rate)
        publishing = asyncio.create_task(publisher.run())
        tasks.append(publishing)
        await _wait(lambda: deliveries() >= config.warmup, progress, 30.0, "warm-up")
        fault_end = time.monotonic()
        for strike in range(config.repeats):
            if strike:
                target = deliveries() + config.between
                await _wait(lambda t=target: deliveries() >= t, progress, 60.0, "traffic")
            load = Counter(c.last_url for c in consumers if c.connected.is_set())
            victim: NodeProcess = max(
                (n for n in group.nodes if n.alive), key=lambda n: load[n.url]
            )
            await victim.kill()
            fault_end = time.monotonic()
            if strike + 1 < config.repeats:
                await victim.start()  # capacity back on its port, as an orchestrator would
        await asyncio.sleep(config.after_seconds)  # traffic through the recovery, not a sync
        publisher.stop.set()
        await asyncio.wait_for(publishing, 30)
        stopped = time.monotonic()
        for ledger in ledgers.values():  # every device is checked against every send
            ledger.sent, ledger.bodies = sent.sent, {**sent.bodies, **ledger.bodies}
            ledger.queue_of, ledger.ambiguous = sent.queue_of, sent.ambiguous

        def everyone_has_everything() -> bool:
            return all(ledger.all_delivered() for ledger in ledgers.values())

        await _wait(everyone_has_everything, progress, config.drain_timeout, "every copy")
        names = [qname, *(inbox_name(qname, d) for d in devices)]
        async with asyncio.timeout(config.drain_timeout):
            while any([(await queues.get_queue_attributes(n)).msgs for n in names]):
                await asyncio.sleep(0.05)  # external state (Redis): bounded poll
        drain = time.monotonic() - stopped
        reconnects = sum(c.connections for c in consumers) - len(consumers)
        reports = [
            check(ledger, FAULT, fault_end, drain_seconds=drain, reconnects=reconnects)
            for ledger in ledgers.values()
        ]
        report = merge_reports(reports)
        return dataclasses.replace(report, send_errors=sent.send_errors)
    finally:
        for consumer in consumers:
            consumer.stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
        await group.aclose()
        await queues.close()

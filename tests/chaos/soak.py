"""Soak: many ``wsmq.v1`` connections, steady traffic, a little churn; RSS and fds must stay flat.

``python -m tests.chaos.soak --connections 10000 --duration 300`` (``scripts/soak``) starts a
private Redis, ``--nodes`` ``wsmq serve`` subprocesses, client processes holding the
connections (a few thousand each), and a paced publisher. After a warm-up it samples every
node's RSS and open file descriptors until the end, waits until every queue is drained, and
prints::

    soak: connections=10000 duration=300 msgs=60000 rss_start=... rss_end=... fds_start=...
      fds_end=... verdict=flat

(RSS in MiB, summed over the nodes). ``verdict=leak`` when RSS grew more than
``max(rss_slack_mib, rss_slack_ratio * rss_start)`` or descriptors grew more than the
connections being churned at that moment allow. Exit status 0 only for ``flat`` and drained.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

from .procs import NodeGroup, make_users, proc_stats

__all__ = ["SoakConfig", "SoakResult", "main", "run_soak"]

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


@dataclass(frozen=True)
class SoakConfig:
    connections: int = 200
    duration: float = 20.0  # measured part, after the warm-up
    warmup: float = 5.0
    rate: float = 50.0  # messages/s over all queues
    nodes: int = 1
    users: int = 100  # connections share users; each connection subscribes to its user's queue
    per_process: int = 2500  # connections per client process
    churn_interval: float = 2.0  # every client process closes churn_count sockets this often
    churn_count: int = 2
    sample_interval: float = 2.0
    rss_slack_mib: float = 16.0
    rss_slack_ratio: float = 0.10
    drain_timeout: float = 60.0


@dataclass
class SoakResult:
    config: SoakConfig
    msgs: int = 0  # messages sent (each acked, hence deleted, once drained)
    rss_start: int = 0
    rss_end: int = 0
    fds_start: int = 0
    fds_end: int = 0
    conns_start: int = 0  # open WebSockets per the nodes' wsmq_connections gauge
    conns_end: int = 0
    drained: bool = False
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, rss, fds, conns
    clients: list[dict[str, Any]] = field(default_factory=list)
    closes: dict[str, float] = field(default_factory=dict)  # server close codes at the end

    @property
    def fd_slack(self) -> int:
        procs = math.ceil(self.config.connections / self.config.per_process)
        return procs * self.config.churn_count + 16

    @property
    def verdict(self) -> str:
        """``leak`` when RSS grew beyond the slack, or descriptors other than the open
        WebSockets did (sockets being churned count as the difference between the two)."""
        cfg = self.config
        rss_limit = max(cfg.rss_slack_mib * MIB, cfg.rss_slack_ratio * self.rss_start)
        leak = self.rss_end - self.rss_start > rss_limit
        other_start = self.fds_start - self.conns_start
        other_end = self.fds_end - self.conns_end
        leak = leak or other_end - other_start > self.fd_slack
        return "leak" if leak else "flat"

    @property
    def held(self) -> bool:
        """The connections were still open at the end (allowing for the sockets being churned,
        which reconnect within a few seconds)."""
        return self.conns_end >= 0.97 * self.config.connections - self.fd_slack

    def line(self) -> str:
        cfg = self.config
        return (
            f"soak: connections={cfg.connections} duration={cfg.duration:g} msgs={self.msgs}"
            f" rss_start={self.rss_start / MIB:.1f}MiB rss_end={self.rss_end / MIB:.1f}MiB"
            f" fds_start={self.fds_start} fds_end={self.fds_end} verdict={self.verdict}"
        )

    def detail(self) -> str:
        received = sum(int(c.get("received", 0)) for c in self.clients)
        connects = sum(int(c.get("connects", 0)) for c in self.clients)
        resubscribes = sum(int(c.get("resubscribes", 0)) for c in self.clients)
        errors = sum(int(c.get("errors", 0)) for c in self.clients)
        rss = [round(s[1] / MIB, 1) for s in self.samples]
        conns = [s[3] for s in self.samples]
        first_errors = sorted({e for c in self.clients for e in c.get("last_errors", [])})[:3]
        return (
            f"soak-detail: nodes={self.config.nodes} sent={self.msgs} received={received}"
            f" drained={'yes' if self.drained else 'no'} held={'yes' if self.held else 'no'}"
            f" conns_start={self.conns_start} conns_end={self.conns_end} connects={connects}"
            f" errors={errors} resubscribes={resubscribes} server_closes={self.closes}"
            f" rss_samples_mib={rss}"
            f" conns_samples={conns} first_errors={first_errors}"
        )


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the nodes and clients)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _stats(group: NodeGroup) -> tuple[int, int]:
    rss = fds = 0
    for node in group.nodes:
        r, f = proc_stats(node.pid)
        rss, fds = rss + r, fds + f
    return rss, fds


async def _metrics(http: aiohttp.ClientSession, group: NodeGroup) -> dict[str, float]:
    """``wsmq_connections`` and ``wsmq_closes_total{code}`` summed over the nodes."""
    out: dict[str, float] = {}
    for node in group.nodes:
        url = node.url.replace("ws://", "http://", 1).rstrip("/") + "/metrics"
        async with asyncio.timeout(10), http.get(url) as resp:
            text = await resp.text()
        for line in text.splitlines():
            if line.startswith(("wsmq_connections ", "wsmq_closes_total{")):
                name, _, value = line.rpartition(" ")
                out[name] = out.get(name, 0.0) + float(value)
    return out


async def _sample(http: aiohttp.ClientSession, group: NodeGroup) -> tuple[int, int, int]:
    rss, fds = _stats(group)
    conns = int((await _metrics(http, group)).get("wsmq_connections", 0))
    return rss, fds, conns


async def _spawn_clients(
    cfg: SoakConfig, specs: list[dict[str, Any]], workdir: Path
) -> list[asyncio.subprocess.Process]:
    procs = []
    for i in range(0, len(specs), cfg.per_process):
        spec_file = workdir / f"client{i // cfg.per_process}.json"
        spec = {
            "connections": specs[i : i + cfg.per_process],
            "churn_interval": cfg.churn_interval,
            "churn_count": cfg.churn_count,
        }
        spec_file.write_text(json.dumps(spec))
        with open(workdir / f"client{i // cfg.per_process}.log", "wb") as err:
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.chaos.soak_client",
                    str(spec_file),
                    cwd=str(ROOT),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
            )
    return procs


async def _read_event(proc: asyncio.subprocess.Process, event: str) -> dict[str, Any]:
    assert proc.stdout is not None
    while True:
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"soak client exited before {event!r}")
        data: dict[str, Any] = json.loads(line)
        if data.get("event") == event:
            return data


async def _backlog(queues: Queues, qnames: list[str]) -> int:
    pipe = queues.redis.pipeline(transaction=False)
    for qname in qnames:
        pipe.zcard(f"{queues.ns}:{qname}")
    return sum(int(n) for n in await pipe.execute())


def _stderr(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def run_soak(cfg: SoakConfig, workdir: Path, log: Any = _stderr) -> SoakResult:
    """Run the soak in ``workdir`` and return the measurements (progress goes to ``log``)."""
    raise_fd_limit()
    result = SoakResult(cfg)
    users = min(cfg.users, cfg.connections)
    redis = RedisProcess()
    await asyncio.to_thread(redis.start)
    clients: list[asyncio.subprocess.Process] = []
    group = NodeGroup(redis.url, workdir / "users.json", workdir, ("--heartbeat", "10"))
    queues = Queues.from_url(redis.url, realtime=True)
    http = aiohttp.ClientSession()
    try:
        creds = await make_users(workdir / "users.json", users, prefix="soak")
        qnames = [c.user_id for c in creds]
        for qname in qnames:
            await queues.create_queue(qname, vt=30)
        await group.start(cfg.nodes)
        log(f"soak: {cfg.nodes} node(s) up (pids {[n.pid for n in group.nodes]}), connecting")
        specs = [
            {
                "url": group.nodes[j % cfg.nodes].url,
                "headers": creds[j % users].headers,
                "qname": creds[j % users].user_id,
            }
            for j in range(cfg.connections)
        ]
        clients = await _spawn_clients(cfg, specs, workdir)
        async with asyncio.timeout(60 + cfg.connections / 50):
            ready = await asyncio.gather(*(_read_event(p, "ready") for p in clients))
        connected = sum(int(r["connections"]) for r in ready)
        log(f"soak: {connected}/{cfg.connections} connections connected, warming up")
        if connected < cfg.connections:
            raise RuntimeError(f"only {connected} of {cfg.connections} connections connected")
        publisher = asyncio.create_task(_publish(queues, qnames, cfg.rate, result))
        try:
            await asyncio.sleep(cfg.warmup)  # the warm-up period itself (allocator, caches)
            result.rss_start, result.fds_start, result.conns_start = await _sample(http, group)
            start = time.monotonic()
            result.samples.append((0.0, result.rss_start, result.fds_start, result.conns_start))
            while (elapsed := time.monotonic() - start) < cfg.duration:
                await asyncio.sleep(min(cfg.sample_interval, cfg.duration - elapsed))
                result.samples.append((time.monotonic() - start, *await _sample(http, group)))
            result.rss_end, result.fds_end, result.conns_end = result.samples[-1][1:]
            closes = await _metrics(http, group)
            result.closes = {
                k[len("wsmq_closes_total") :]: v for k, v in closes.items() if "{" in k
            }
            log(f"soak: measured {cfg.duration:g}s, {result.msgs} sent; draining")
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(cfg.drain_timeout):
                while await _backlog(queues, qnames):
                    await asyncio.sleep(0.2)  # external state (Redis): bounded poll
                result.drained = True
        log(f"soak: drained={result.drained}; stopping the clients")
    finally:
        for proc in clients:
            if proc.returncode is None:
                proc.terminate()
        for proc in clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(20):
                    result.clients.append(await _read_event(proc, "done"))
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
        await group.aclose()
        await http.close()
        await queues.close()
        await asyncio.to_thread(redis.cleanup)
    return result


async def _publish(queues: Queues, qnames: list[str], rate: float, result: SoakResult) -> None:
    interval = 1.0 / rate
    next_at = time.monotonic()
    while True:
        await queues.send_message(random.choice(qnames), f"soak {result.msgs}")
        result.msgs += 1
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))  # pacing


def parse_args(argv: list[str] | None) -> tuple[SoakConfig, bool, str | None]:
    parser = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n")[0])
    defaults = SoakConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(
            "--" + name.replace("_", "-"), type=type(value), default=value, metavar="N"
        )
    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    parser.add_argument("--workdir", default=None, help="keep node/client logs here")
    ns = vars(parser.parse_args(argv))
    as_json = bool(ns.pop("json"))
    workdir = ns.pop("workdir")
    return SoakConfig(**ns), as_json, workdir


def main(argv: list[str] | None = None) -> int:
    cfg, as_json, workdir = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="wsmq-soak-") as tmp:
        folder = Path(workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(run_soak(cfg, folder))
    print(result.detail())
    print(result.line())
    if as_json:
        print(json.dumps({"line": result.line(), "verdict": result.verdict, **asdict(result)}))
    return 0 if result.verdict == "flat" and result.drained and result.held else 1


if __name__ == "__main__":
    sys.exit(main())

"""The Redis deployments a chaos run can sit on, each with the fault that hits it.

A :class:`Backend` starts a deployment, gives the URL the gateway nodes use, builds the
publisher's :class:`~wsmq.queue.Queues`, and knows how to hurt itself (``restart``, ``failover``,
``kill_clients``). Blocking process control runs in a thread so the event loop (publishers,
clients) keeps going during the fault, as it would in production.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from typing import Protocol

import redis

from wsmq.queue import Queues
from wsmq.testing.redisproc import RedisProcess

__all__ = ["Backend", "ClusterBackend", "SentinelBackend", "StandaloneBackend", "scaleout_missing"]


class Backend(Protocol):
    """A running Redis deployment."""

    url: str  # what ``wsmq serve --redis-url`` gets
    name: str

    def start(self) -> None: ...
    def cleanup(self) -> None: ...
    def queues(self) -> Queues: ...
    def admin_ports(self) -> list[int]: ...


class Pausable(Protocol):
    """A publisher that can hold its sends (the chaos harness's ``Publisher``)."""

    async def pause(self) -> None: ...
    def resume(self) -> None: ...


class StandaloneBackend:
    """One redis-server with AOF (``appendfsync always``)."""

    name = "standalone"

    def __init__(self) -> None:
        self.proc = RedisProcess(appendonly=True)
        self.url = self.proc.url

    def start(self) -> None:
        self.proc.start()

    def cleanup(self) -> None:
        self.proc.cleanup()

    def queues(self) -> Queues:
        return Queues.from_url(self.url, realtime=True)

    def admin_ports(self) -> list[int]:
        return [self.proc.port]

    async def restart(self, down_seconds: float) -> None:
        """SIGKILL the server, keep it down ``down_seconds``, start it again (same AOF)."""
        await asyncio.to_thread(self.proc.kill)
        await asyncio.sleep(down_seconds)  # the outage itself, not synchronisation
        await asyncio.to_thread(self.proc.start)


def kill_clients(ports: list[int]) -> int:
    """``CLIENT KILL`` every normal and pub/sub connection (not our own) on each server."""
    killed = 0
    for port in ports:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        try:
            for kind in ("normal", "pubsub"):
                killed += int(client.execute_command("CLIENT", "KILL", "TYPE", kind))  # type: ignore[no-untyped-call]
        finally:
            client.close()
    return killed


def scaleout_missing(kind: str) -> str | None:
    """Why the ``kind`` ("sentinel"/"cluster") fault cannot run on this machine, or ``None``."""
    if kind == "cluster" and shutil.which("redis-cli") is None:
        return "redis-cli is not installed (needed to create a cluster)"
    return None


class SentinelBackend:
    """1 master + 1 replica (AOF) + 3 sentinels; the fault SIGKILLs the master."""

    name = "sentinel"

    def __init__(self) -> None:
        from wsmq.testing.redisproc_cluster import SentinelSetup

        self.setup = SentinelSetup(appendonly=True)
        self.url = self.setup.url

    def start(self) -> None:
        self.setup.start()

    def cleanup(self) -> None:
        self.setup.cleanup()

    def queues(self) -> Queues:
        return Queues.from_url(self.url, realtime=True)

    def admin_ports(self) -> list[int]:
        return [self.setup.current_master().port]

    async def failover(self) -> None:
        """SIGKILL the master and wait until the sentinels promoted the replica."""
        await asyncio.to_thread(self.setup.kill_master)


class ClusterBackend:
    """3 masters + 3 replicas; the fault SIGKILLs the master of the first chaos queue."""

    name = "cluster"

    def __init__(self) -> None:
        from wsmq.testing.redisproc_cluster import RedisCluster3

        self.cluster = RedisCluster3(replicas=1, appendonly=True)
        self.url = self.cluster.url

    def start(self) -> None:
        self.cluster.start()

    def cleanup(self) -> None:
        self.cluster.cleanup()

    def queues(self) -> Queues:
        return Queues.from_url(self.url, realtime=True)  # cluster layout on a cluster

    def admin_ports(self) -> list[int]:
        return [n.port for n in self.cluster.masters()]

    async def failover(self, key: str, publisher: Pausable) -> None:
        """SIGKILL the master serving ``key`` and wait until its replica took over.

        Replication is asynchronous and redis-py cannot ``WAIT`` on a cluster connection, so
        the publisher pauses until the replica has every write acknowledged so far, then the
        master dies and the publisher resumes into the failover (a send acknowledged by a master
        that dies before replicating it is a documented loss, not what is under test)."""
        master = await asyncio.to_thread(self.cluster.master_for_key, key)
        await publisher.pause()
        try:
            await asyncio.to_thread(_wait_replica_caught_up, master.port)
            await asyncio.to_thread(master.kill)
        finally:
            publisher.resume()
        await asyncio.to_thread(self.cluster.wait_ok, 30.0)


def _wait_replica_caught_up(port: int, timeout: float = 10.0) -> None:
    """Wait until a replica of the master on ``port`` acknowledged its current offset."""
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, decode_responses=True)
    try:
        target = int(client.info("replication")["master_repl_offset"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = client.info("replication")
            offsets = [int(v["offset"]) for k, v in info.items() if k.startswith("slave")]
            if offsets and max(offsets) >= target:
                return
            time.sleep(0.01)  # another process's state: bounded poll
        raise TimeoutError(f"replica of :{port} did not reach offset {target} in {timeout}s")
    finally:
        client.close()

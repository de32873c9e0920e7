"""Private Redis Cluster and Sentinel deployments on loopback, for tests, chaos runs and benches.

- :class:`RedisCluster3`: 3 masters (optionally one replica each) started as
  ``redis-server --cluster-enabled yes`` and joined with ``redis-cli --cluster create``.
- :class:`SentinelSetup`: 1 master, 1 replica and 3 sentinels (quorum 2) with short timeouts,
  so a killed master is replaced within a few seconds.

Both build on :class:`wsmq.testing.redisproc.RedisProcess` (free ports, own data directory,
kill/restart) and only use blocking calls with deadlines, so a broken setup fails fast with the
server log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from wsmq.testing.redisproc import RedisProcess, RedisProcessError, find_redis_server, free_port

__all__ = ["RedisCluster3", "SentinelProcess", "SentinelSetup", "wait_until"]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms until true; :class:`RedisProcessError` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass  # a node still starting or just killed: keep polling
        time.sleep(0.05)
    raise RedisProcessError(f"timed out after {timeout}s waiting for {what}")


def _client(port: int, host: str = "127.0.0.1") -> redis.Redis:
    return redis.Redis(
        host=host, port=port, socket_timeout=2, socket_connect_timeout=1, decode_responses=True
    )


def _query(port: int, *args: Any) -> Any:
    client = _client(port)
    try:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def _redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found:
        return found
    sibling = Path(find_redis_server()).with_name("redis-cli")
    if sibling.exists():
        return str(sibling)
    raise RedisProcessError("redis-cli not found (needed to create a cluster)")


def _new_bus_port(proc: RedisProcess) -> None:
    """A node's ports were taken before it bound them: its cluster bus gets a fresh one too."""
    args = proc.extra_args
    args[args.index("--cluster-port") + 1] = str(free_port())


class RedisCluster3:
    """A real Redis Cluster: 3 masters (+ ``replicas`` per master) on free loopback ports.

    The cluster bus gets its own free port (``cluster-port``), so data ports are not limited to
    below 55536.  ``node_timeout_ms`` is short so failovers finish in about 2-3 seconds.
    """

    def __init__(
        self, *, replicas: int = 0, node_timeout_ms: int = 1000, appendonly: bool = False
    ) -> None:
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []
        for _ in range(3 * (1 + replicas)):
            bus_port = free_port()
            # The bus port must differ from the data port picked inside RedisProcess.
            proc = RedisProcess(
                on_new_port=_new_bus_port,
                appendonly=appendonly,
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                    "--cluster-port", str(bus_port),
                    "--cluster-replica-validity-factor", "0",
                    "--repl-diskless-sync-delay", "0",
                ],
            )  # fmt: skip
            self.nodes.append(proc)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL listing every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, timeout: float = 30.0) -> RedisCluster3:
        for node in self.nodes:
            node.start()
        cmd = [
            _redis_cli(),
            "--cluster", "create",
            *(f"127.0.0.1:{p}" for p in self.ports),
            "--cluster-replicas", str(self.replicas),
            "--cluster-yes",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RedisProcessError(f"redis-cli --cluster create failed: {result.stdout[-2000:]}")
        self.wait_ok(timeout)
        self.wait_replicas_in_sync(timeout)
        return self

    def wait_replicas_in_sync(self, timeout: float = 30.0) -> None:
        """Wait until every live replica has finished its sync with its master."""

        def in_sync() -> bool:
            for node in self.alive():
                info = _query(node.port, "INFO", "replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            return True

        wait_until(in_sync, timeout, "replicas in sync")

    def alive(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.process is not None and n.ping()]

    def _slots_covered_by_live_masters(self, port: int) -> bool:
        live = {n.port for n in self.alive()}
        info = _query(port, "CLUSTER", "INFO")
        if "cluster_state:ok" not in info:
            return False
        ranges = _query(port, "CLUSTER", "SLOTS")
        covered = 0
        for entry in ranges:
            start, end, master = entry[0], entry[1], entry[2]
            if int(master[1]) not in live:
                return False
            covered += int(end) - int(start) + 1
        return covered == 16384

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node is ``cluster_state:ok`` with all slots on live masters."""

        def all_ok() -> bool:
            return all(self._slots_covered_by_live_masters(n.port) for n in self.alive())

        try:
            wait_until(all_ok, timeout, "cluster_state:ok on every node")
        except RedisProcessError as exc:
            raise RedisProcessError(f"{exc}\n{self.nodes[0].log_tail()}") from None

    def role(self, node: RedisProcess) -> str:
        """``master`` or ``slave`` as the node itself reports it."""
        return str(_query(node.port, "ROLE")[0])

    def masters(self) -> list[RedisProcess]:
        return [n for n in self.alive() if self.role(n) == "master"]

    def master_for_key(self, key: str) -> RedisProcess:
        """The live node currently serving ``key``'s slot."""
        live = self.alive()
        slot = int(_query(live[0].port, "CLUSTER", "KEYSLOT", key))
        for entry in _query(live[0].port, "CLUSTER", "SLOTS"):
            if int(entry[0]) <= slot <= int(entry[1]):
                port = int(entry[2][1])
                return next(n for n in self.nodes if n.port == port)
        raise RedisProcessError(f"slot {slot} is not served")

    def kill_master(self, node: RedisProcess, *, wait_failover: bool = True) -> None:
        """SIGKILL a master; with replicas, wait until one of them took over its slots."""
        node.kill()
        if wait_failover and self.replicas:
            self.wait_ok(timeout=max(15.0, self.node_timeout_ms / 1000 * 10))

    def restart(self, node: RedisProcess, timeout: float = 30.0) -> None:
        """Start a stopped node again (same port, same ``nodes.conf``) and wait for the cluster."""
        node.start()
        self.wait_ok(timeout)
        self.wait_replicas_in_sync(timeout)

    def failover(self, replica: RedisProcess, timeout: float = 30.0) -> None:
        """Manual, lossless failover: ``CLUSTER FAILOVER`` on ``replica``; wait until it leads.

        Redis silently aborts a manual failover that does not finish in 5 s (e.g. on a loaded
        machine), so it is asked again until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            _query(replica.port, "CLUSTER", "FAILOVER")
            try:
                wait_until(lambda: self.role(replica) == "master", 6.0, "replica promotion")
                break
            except RedisProcessError:
                if time.monotonic() > deadline:
                    raise
        self.wait_ok(timeout)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()

    def __enter__(self) -> RedisCluster3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class SentinelProcess(RedisProcess):
    """``redis-server sentinel.conf --sentinel`` monitoring ``master_name`` on ``master_port``."""

    def __init__(
        self,
        *,
        master_port: int,
        master_name: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        # An explicit port: the config file below names it, so a start must not move it.
        super().__init__(port=free_port())
        self.master_name = master_name
        self.conf = Path(self.data_dir, "sentinel.conf")
        # Sentinel rewrites its config file, so it must be a writable file of its own.
        self.conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {self.host}",
                    "protected-mode no",
                    "daemonize no",
                    f"dir {self.data_dir}",
                    f"logfile {os.path.join(self.data_dir, 'redis.log')}",
                    f"sentinel monitor {master_name} 127.0.0.1 {master_port} {quorum}",
                    f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                    f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                    f"sentinel parallel-syncs {master_name} 1",
                    "",
                ]
            )
        )

    def command(self) -> list[str]:
        return [find_redis_server(), str(self.conf), "--sentinel"]

    def master_port(self) -> int:
        """The master port this sentinel currently believes in."""
        addr = _query(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(addr[1])


class SentinelSetup:
    """1 master, 1 replica, 3 sentinels (quorum 2) on loopback; ``url`` is a sentinel URL.

    ``down-after-milliseconds`` 1000 and ``failover-timeout`` 3000: a killed master is replaced
    in about 2-3 s, and (Sentinel's rule) another failover of the same master can start 6 s
    after the previous one.  ``restart(node)`` brings a killed node back as a replica.
    """

    def __init__(self, *, master_name: str = "mymaster", appendonly: bool = False) -> None:
        self.master_name = master_name
        # No diskless-sync delay (5 s by default): the replica is in sync at once.
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        self._fast_sync = fast_sync
        # An explicit port: the replica and the sentinels name it, so a start must not move it.
        self.master = RedisProcess(port=free_port(), appendonly=appendonly, extra_args=fast_sync)
        self.replica = RedisProcess(
            appendonly=appendonly,
            extra_args=[*fast_sync, "--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self.sentinels = [
            SentinelProcess(master_port=self.master.port, master_name=master_name) for _ in range(3)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    @property
    def data_nodes(self) -> list[RedisProcess]:
        return [self.master, self.replica]

    def start(self, timeout: float = 30.0) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        wait_until(
            lambda: _query(self.replica.port, "INFO", "replication")["master_link_status"] == "up",
            timeout,
            "replica in sync",
        )
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_ready(timeout)
        return self

    def _sentinel_ready(self, sentinel: SentinelProcess, master_port: int) -> bool:
        if sentinel.master_port() != master_port:
            return False
        replicas = _query(sentinel.port, "SENTINEL", "REPLICAS", self.master_name)
        peers = _query(sentinel.port, "SENTINEL", "SENTINELS", self.master_name)
        # A replica the sentinel still thinks is down cannot be promoted.
        healthy = [
            r for r in replicas if not {"s_down", "disconnected"} & set(str(r["flags"]).split(","))
        ]
        return len(healthy) >= 1 and len(peers) >= len(self.sentinels) - 1

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every sentinel knows the master, its replica and the other sentinels
        (only then can they agree on a failover)."""
        port = self.current_master().port
        wait_until(
            lambda: all(self._sentinel_ready(s, port) for s in self.sentinels),
            timeout,
            "sentinels to discover the replica and each other",
        )

    def current_master(self) -> RedisProcess:
        """The data node the sentinels currently name as master."""
        ports = [s.master_port() for s in self.sentinels if s.ping()]
        port = max(set(ports), key=ports.count)
        return next(n for n in self.data_nodes if n.port == port)

    def kill_master(self, timeout: float = 30.0) -> RedisProcess:
        """SIGKILL the current master; wait until the sentinels promoted the replica and it
        accepts writes.  Returns the new master."""
        old = self.current_master()
        new = next(n for n in self.data_nodes if n is not old)
        old.kill()

        def promoted() -> bool:
            if not all(s.master_port() == new.port for s in self.sentinels):
                return False
            return str(_query(new.port, "ROLE")[0]) == "master"

        wait_until(promoted, timeout, "sentinel failover")
        return new

    def restart(self, node: RedisProcess, timeout: float = 30.0) -> None:
        """Start a killed data node again as a replica of the current master (what the
        sentinels would reconfigure it to, only without waiting for their 10 s INFO period).
        Waits until it is in sync and seen by every sentinel, so a further failover can
        promote it."""
        master = self.current_master()
        if node is master:
            raise RedisProcessError("restart() is for a node that is not the current master")
        node.extra_args = [
            *self._fast_sync,
            "--replicaof", "127.0.0.1", str(master.port),
        ]  # fmt: skip
        node.start()

        def rejoined() -> bool:
            info = _query(node.port, "INFO", "replication")
            master = self.current_master()
            return (
                master is not node
                and info["role"] == "slave"
                and int(info["master_port"]) == master.port
                and info.get("master_link_status") == "up"
            )

        wait_until(rejoined, timeout, f"node {node.port} to rejoin as a replica")
        self.wait_ready(timeout)

    def cleanup(self) -> None:
        for proc in [*self.sentinels, self.replica, self.master]:
            proc.cleanup()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

"""The ``scale`` scenario's sizes and the machine limits they must fit (``bench/scale.py``)."""

from __future__ import annotations

import contextlib
import math
import resource
from dataclasses import dataclass
from pathlib import Path

PORTS_PER_SOURCE_IP = 20_000  # of the ~28k ephemeral ports: headroom for TIME_WAIT and others
FD_RESERVE = 512  # descriptors of a process besides its sockets (Redis, logs, epoll, ...)


class ScaleLimitError(ValueError):
    """The machine's limits cannot hold the sockets asked for (the message says which)."""


@dataclass(frozen=True)
class ScaleConfig:
    connections: int = 100_000
    nodes: int = 2
    initial_nodes: int = 1  # the sockets are spread over the first K nodes; node 0 restarts
    queues: int = 1000
    users: int = 100
    client_procs: int = 3  # at least enough for the open-file limit of each
    source_ips: int = 0  # 0: enough for the connections (PORTS_PER_SOURCE_IP each)
    concurrency: int = 64  # handshakes in flight per client process
    idle: float = 30.0  # seconds of idle CPU measurement
    storm_messages: int = 5000
    storm_rate: float = 500.0  # messages per second published from the restart on
    deliver_timeout: float = 90.0  # after the storm, for every storm message to arrive
    storm_timeout: float = 300.0

    def check(self) -> None:
        problems = [
            what
            for what, ok in (
                ("connections must be >= 1", self.connections >= 1),
                ("nodes must be >= 2 (the storm needs another node)", self.nodes >= 2),
                (
                    "initial_nodes must be between 1 and nodes",
                    1 <= self.initial_nodes <= self.nodes,
                ),
                ("users must be between 1 and queues", 1 <= self.users <= self.queues),
                ("client_procs must be >= 1", self.client_procs >= 1),
                ("source_ips must be between 0 and 250", 0 <= self.source_ips <= 250),
                ("concurrency must be >= 1", self.concurrency >= 1),
                ("idle, storm_rate must be > 0", self.idle > 0 and self.storm_rate > 0),
                ("storm_messages must be >= 0", self.storm_messages >= 0),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def ips(self) -> list[str]:
        count = self.source_ips or max(1, math.ceil(self.connections / PORTS_PER_SOURCE_IP))
        return [f"127.0.0.{2 + i}" for i in range(count)]

    @property
    def per_node(self) -> int:
        """Sockets on each loaded node before the storm."""
        return math.ceil(self.connections / self.initial_nodes)

    def procs_for(self, fd_limit: int) -> int:
        """Client processes: as asked, or more so that each stays within ``fd_limit``."""
        return max(self.client_procs, math.ceil(self.connections / (fd_limit - FD_RESERVE)))


def raise_fd_limits(cfg: ScaleConfig) -> dict[str, int]:
    """Raise this process's open-file limits (children inherit them; every node and client
    process raises its soft limit to the hard one); :class:`ScaleLimitError` when a node
    cannot hold its share. Returns the limits before and after, for the report.

    The hard limit only goes up with ``CAP_SYS_RESOURCE`` (root outside a container that
    dropped it), at most to ``fs.nr_open``.
    """
    # a loaded node keeps its share, and a node may get its own plus the restarted node's
    wanted = 2 * cfg.per_node + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nr_open_file = Path("/proc/sys/fs/nr_open")
    nr_open = int(nr_open_file.read_text()) if nr_open_file.exists() else wanted
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # no CAP_SYS_RESOURCE: keep it
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, min(wanted, nr_open)))
    hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft_now = hard_now if hard_now != resource.RLIM_INFINITY else max(soft, wanted)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_now, hard_now))
    soft_now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_now < cfg.per_node + FD_RESERVE:
        need = math.ceil(cfg.connections / (soft_now - FD_RESERVE))
        raise ScaleLimitError(
            f"{cfg.per_node:,} sockets on one node need an open-file limit of at least "
            f"{cfg.per_node + FD_RESERVE:,}; the hard limit is {hard_now:,} and this process "
            f"cannot raise it (it needs CAP_SYS_RESOURCE). Raise it before the run "
            f"(ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=...) or spread the "
            f"sockets: --initial-nodes {need} --nodes {need + 1}"
        )
    return {"fd_soft_before": soft, "fd_hard_before": hard, "fd_limit": soft_now}

"""Real processes and sockets for the chaos and soak suites.

- :func:`spawn_node`: ``wsmq serve`` as a subprocess (so SIGKILL is a real crash), through the
  shared launcher :class:`~wsmq.testing.nodes.NodeProcess`.
- :class:`CutProxy`: a TCP proxy in front of a node whose :meth:`CutProxy.cut` aborts every
  connection going through it (RST both ways), as a load balancer or NAT dropping them would,
  and whose :meth:`CutProxy.blackhole` silently drops everything on the current connections
  (a dead peer or network partition: only heartbeats can notice).
- :func:`make_users`: users with tokens in a JSON users file shared by every node.
- :func:`proc_stats`: RSS and open file descriptors of a process, from ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wsmq.testing.nodes import NodeProcess
from wsmq.testing.users import TestUser
from wsmq.testing.users import make_users as _make_users

__all__ = [
    "SECRET",
    "CutProxy",
    "NodeGroup",
    "make_users",
    "proc_stats",
    "spawn_node",
]

SECRET = "chaos-secret-0123456789abcdef0123456789abcdef"
# Chaos clients ack every message: the default per-connection frame limit (100/s) would close
# a fast consumer with 4429, which is not the fault under test.
NODE_ARGS: tuple[str, ...] = (
    "--poll-interval", "0.2",
    "--heartbeat", "2",
    "--shutdown-timeout", "2",
    "--rate-limit", "100000",
    "--rate-burst", "100000",
    "--log-level", "warning",
)  # fmt: skip


async def make_users(
    users_file: Path, count: int, *, queues: Sequence[str] = (), prefix: str = "chaos"
) -> list[TestUser]:
    """Create ``count`` users allowed to subscribe to ``queues`` (and their own id), with
    x-tokens for the chaos nodes' secret valid for a day."""
    return await _make_users(
        users_file, count, queues=queues, prefix=prefix, secret=SECRET, ttl=24 * 3600
    )


async def spawn_node(
    redis_url: str, users_file: Path, log_path: Path, *extra: str, ready_timeout: float = 30.0
) -> NodeProcess:
    """Start ``wsmq serve`` on a free port and wait for its ``listening`` line."""
    node = NodeProcess.serve(
        log_path, "--redis-url", redis_url, "--users-file", str(users_file),
        "--secret", SECRET, *NODE_ARGS, *extra,
    )  # fmt: skip
    return await node.start(ready_timeout)


@dataclass
class NodeGroup:
    """The gateway nodes of one run; :meth:`aclose` kills every one that is still alive."""

    redis_url: str
    users_file: Path
    workdir: Path
    extra: tuple[str, ...] = ()
    nodes: list[NodeProcess] = field(default_factory=list)

    async def start(self, count: int) -> list[NodeProcess]:
        started = await asyncio.gather(
            *(
                spawn_node(
                    self.redis_url,
                    self.users_file,
                    self.workdir / f"node{len(self.nodes) + i}.log",
                    *self.extra,
                )
                for i in range(count)
            )
        )
        self.nodes.extend(started)
        return list(started)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    async def aclose(self) -> None:
        for node in self.nodes:
            await node.stop(grace=0, sig=signal.SIGKILL)


@contextlib.asynccontextmanager
async def node_group(
    redis_url: str, users_file: Path, workdir: Path, count: int, *extra: str
) -> AsyncIterator[NodeGroup]:
    """``count`` started nodes; all SIGKILLed on exit, whatever happened."""
    group = NodeGroup(redis_url, users_file, workdir, tuple(extra))
    try:
        await group.start(count)
        yield group
    finally:
        await group.aclose()


class CutProxy:
    """A TCP proxy to ``target_port``; :meth:`cut` resets every connection through it."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._frozen: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cuts = 0

    async def start(self) -> CutProxy:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def url_for(self, node_url: str) -> str:
        """``node_url`` with its port replaced by the proxy's."""
        scheme, rest = node_url.split("://", 1)
        path = rest.split("/", 1)[1] if "/" in rest else ""
        return f"{scheme}://{self.host}:{self.port}/{path}"

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
            )
        finally:
            self._pairs.discard(pair)
            self._frozen.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if pair in self._frozen:
                    continue  # black hole: the bytes vanish
                writer.write(data)
                await writer.drain()
        if pair not in self._frozen:  # a black hole does not pass the close on either
            writer.transport.abort()

    def cut(self) -> int:
        """Abort every proxied connection now (both sides see a reset); returns how many."""
        pairs = list(self._pairs)
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        self.cuts += 1
        return len(pairs)

    def blackhole(self) -> int:
        """From now on, drop every byte (and the closes) of the current connections; new
        connections pass normally. Returns how many connections were swallowed."""
        self._frozen |= self._pairs
        return len(self._pairs)

    async def aclose(self) -> None:
        self._frozen.clear()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def proc_stats(pid: int) -> tuple[int, int]:
    """``(rss_bytes, open_fds)`` of a live process (Linux ``/proc``)."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
                break
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds

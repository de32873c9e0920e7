"""Child processes of a benchmark run: load generators and publishers, with a JSON-lines control.

Servers (wsmq nodes and the peers) start through :class:`wsmq.testing.nodes.NodeProcess`.

Load generators print one JSON object per line on stdout (``{"event": ...}``) and read commands
(``go``, ``send``, ``stop``) from stdin, so the harness waits on events instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"


class ChildError(RuntimeError):
    """A child process failed, exited early or did not answer in time."""


def node_modules() -> Path:
    """The pinned npm packages (rsmq, rsmq-worker, ws), as installed by scripts/test."""
    return Path(os.environ.get("WSMQ_NODE_MODULES", ROOT / ".npm-interop" / "node_modules"))


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NODE_PATH"] = str(node_modules())
    env["NODE_NO_WARNINGS"] = "1"  # mpbasic (an rsmq-worker dependency) warns on every start
    return env


class Child:
    """One subprocess speaking the JSON-lines protocol."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc
        self._stderr: list[str] = []
        self._stderr_task = asyncio.create_task(self._drain_stderr())

    @classmethod
    async def start(
        cls, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> Child:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd=str(ROOT),
            start_new_session=True,
            limit=64 * 1024 * 1024,  # result lines carry latency samples
        )
        return cls(name, proc)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())
            del self._stderr[:-20]

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr[-10:])

    async def event(self, name: str, wait_s: float) -> dict[str, Any]:
        """Wait for the next ``{"event": name}`` line (other events are skipped)."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    line = await self.proc.stdout.readline()
                    if not line:
                        await self.proc.wait()
                        raise ChildError(
                            f"{self.name} exited ({self.proc.returncode}) before {name!r}: "
                            f"{self.stderr_tail()}"
                        )
                    with contextlib.suppress(ValueError):
                        obj = json.loads(line)
                        if isinstance(obj, dict) and obj.get("event") == name:
                            return obj
                        if isinstance(obj, dict) and obj.get("event") == "error":
                            raise ChildError(f"{self.name}: {obj.get('message')}")
        except TimeoutError:
            raise ChildError(
                f"{self.name}: no {name!r} within {wait_s:.0f}s: {self.stderr_tail()}"
            ) from None

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; safe to call twice."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._stderr_task


def python_child_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def client_kind() -> str:
    """Which WebSocket load generator runs: ``node`` (default) or ``python``.

    ``WSMQ_BENCH_CLIENT=python`` picks ``bench.loadgen`` (aiohttp); the Node one
    (``bench/peers/loadgen.js``, npm ``ws``) spends less of the shared CPU per received frame.
    Without Node.js or the pinned ``ws`` package the Python one runs.
    """
    wanted = os.environ.get("WSMQ_BENCH_CLIENT", "node")
    if wanted not in ("node", "python"):
        raise ValueError(f"WSMQ_BENCH_CLIENT must be 'node' or 'python', not {wanted!r}")
    if wanted == "node" and (shutil.which("node") is None or not (node_modules() / "ws").is_dir()):
        return "python"
    return wanted


async def loadgen(name: str, config: Mapping[str, Any]) -> Child:
    """Start a WebSocket load generator (see :func:`client_kind`) with ``config``.

    The config goes in a file (``@path``): with 10k clients it is too long for argv.
    """
    with tempfile.NamedTemporaryFile(
        "w", prefix="wsmq-loadgen-", suffix=".json", delete=False
    ) as f:
        json.dump(config, f)
    if client_kind() == "node":
        argv = ["node", str(PEERS / "loadgen.js"), "@" + f.name]
        return await Child.start(name, argv, env=node_env())
    return await Child.start(name, python_child_argv("bench.loadgen", "@" + f.name))


async def publisher(name: str, config: Mapping[str, Any]) -> Child:
    """Start a Node.js publisher (``bench/peers/publisher.js``) with ``config``."""
    argv = ["node", str(PEERS / "publisher.js"), json.dumps(config)]
    return await Child.start(name, argv, env=node_env())


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB, from /proc (0 when unavailable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds (0 when it is gone)."""
    try:
        # Fields after the command name (which may hold spaces) start at the state, field 3.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(roles: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """CPU seconds used so far by each role's processes, summed (``{"nodes": 12.3, ...}``)."""
    return {role: sum(cpu_seconds(pid) for pid in pids) for role, pids in roles.items()}

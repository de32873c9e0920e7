"""One ``wsmq serve`` subprocess of the demo, in its own process group.

Stopping signals the whole group (the node and anything it spawned), waits, then SIGKILLs
whatever is left, so the demo never leaves a process behind. On Linux the node also receives
SIGTERM when the process that started it dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from aiohttp import ClientError, ClientSession, ClientTimeout

from wsmq.errors import WsmqError
from wsmq.testing.redisproc import RedisProcess

__all__ = ["DemoRedis", "NodeProcess", "NodeStartError"]

_PR_SET_PDEATHSIG = 1


class NodeStartError(WsmqError, RuntimeError, code="node_start_failed"):
    """A node exited during start-up or did not become ready in time (carries its log tail)."""


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def preexec() -> None:  # runs in the child between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


class DemoRedis(RedisProcess):
    """A private redis-server that also dies with the demo process (``PR_SET_PDEATHSIG``)."""

    def start(self, timeout: float = 10.0) -> DemoRedis:
        if self.process and self.process.poll() is None:
            return self
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        self.wait_ready(timeout)
        return self


class NodeProcess:
    """A gateway node started with ``cmd``; ready when ``GET /readyz`` answers 200."""

    def __init__(
        self, cmd: Sequence[str], host: str, port: int, env: dict[str, str], log_path: Path
    ) -> None:
        self.cmd = list(cmd)
        self.host = host
        self.port = port
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.poll() is None

    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self) -> None:
        """Spawn the node (returns at once; await :meth:`wait_ready`)."""
        if self.running():
            return
        self._close_log()
        self._log = open(self.log_path, "ab")  # closed in stop()
        self.process = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # own process group: Ctrl-C in the terminal is ours to relay
            preexec_fn=_die_with_parent(),  # only prctl: safe after fork
        )

    async def wait_ready(self, ready_timeout: float = 20.0) -> None:
        """Poll ``/readyz`` until 200; raise :class:`NodeStartError` with the log tail."""
        url = f"http://{self.host}:{self.port}/readyz"
        deadline = time.monotonic() + ready_timeout
        async with ClientSession(timeout=ClientTimeout(total=2)) as http:
            while time.monotonic() < deadline:
                if not self.running():
                    raise NodeStartError(
                        f"node on port {self.port} exited with {self.returncode()}:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(ClientError, OSError, asyncio.TimeoutError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise NodeStartError(
            f"node on port {self.port} not ready in {ready_timeout}s:\n{self.log_tail()}"
        )

    async def stop(self, grace: float = 8.0, *, kill: bool = False) -> None:
        """SIGTERM the process group (SIGKILL with ``kill``), then SIGKILL after ``grace`` s."""
        proc = self.process
        if proc is None:
            return
        pgid = proc.pid  # the group id equals the leader's pid (start_new_session)
        self._signal_group(pgid, signal.SIGKILL if kill else signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, grace)
        # Whatever is left in the group (the node, or a straggling child) goes now.
        self._signal_group(pgid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
        self.process = None
        self._close_log()

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the node's log (for error messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

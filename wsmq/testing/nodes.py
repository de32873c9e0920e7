"""One launcher for server subprocesses: ``wsmq serve`` nodes (tests, chaos, bench, demo) and the
benchmark's peer servers.

A :class:`NodeProcess` starts its command in its own process group with its output in a log
file, waits with a bounded timeout until it is ready, and stops it with any signal, SIGKILLing
the whole group after a grace period so nothing is left behind. On Linux the child also gets
SIGTERM when the process that started it dies, even by SIGKILL (``PR_SET_PDEATHSIG``).

Ready means one of two things: the JSON ``listening`` line of ``wsmq serve --json`` on stdout
(the node may pick its own port), or ``GET <ready_path>`` answering 200 (a fixed port, a server
that is not ``wsmq serve``, or readiness that must include Redis). A restart reuses the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from aiohttp import ClientError, ClientSession, ClientTimeout

from wsmq.errors import WsmqError
from wsmq.testing.redisproc import RedisProcess

__all__ = ["DemoRedis", "NodeProcess", "NodeStartError", "wsmq_command"]

_PR_SET_PDEATHSIG = 1
LOOPBACK = "127.0.0.1"


class NodeStartError(WsmqError, RuntimeError, code="node_start_failed"):
    """A node exited during start-up or did not become ready in time (carries its log tail)."""


def wsmq_command() -> list[str]:
    """How to run the ``wsmq`` CLI: the venv's entry point next to this Python, or ``-m wsmq``."""
    script = Path(sys.executable).with_name("wsmq")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wsmq"]


def _die_with_parent(then: Callable[[], None] | None = None) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies, then ``then``."""
    libc: ctypes.CDLL | None = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(None, use_errno=True)
    if libc is None:
        return then

    def preexec() -> None:  # runs in the child between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if then is not None:
            then()

    return preexec


class DemoRedis(RedisProcess):
    """A private redis-server that also dies with the process that started it."""

    def preexec(self) -> Callable[[], None] | None:
        return _die_with_parent()


class NodeProcess:
    """A server subprocess: start, wait until ready, signal, stop, restart on the same port.

    ``ready_path=None`` expects ``wsmq serve --json``: the first stdout line gives url and port
    (stdout is then read and dropped, stderr goes to the log). Otherwise the port must be known
    and both streams go to the log. ``preexec`` runs in the child before exec (resource limits).
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready_path: str | None = None,
        preexec: Callable[[], None] | None = None,
        name: str = "node",
    ) -> None:
        if ready_path is not None and not port:
            raise ValueError("a node polled on ready_path needs a fixed port")
        self.argv = list(argv)
        self.log_path = log_path
        self.host = host
        self.port = port
        self.env = dict(env) if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.ready_path = ready_path
        self.preexec = preexec
        self.name = name
        self.listening: dict[str, object] = {}  # the ``--json`` listening line, once read
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    def serve(
        cls,
        log_path: Path,
        *args: str,
        host: str = LOOPBACK,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        ready_path: str | None = None,
        preexec: Callable[[], None] | None = None,
        name: str = "node",
    ) -> NodeProcess:
        """``wsmq serve --host host --port port *args`` (with ``--json`` when no ready_path)."""
        argv = [*wsmq_command(), "serve", "--host", host, "--port", str(port), *args]
        if ready_path is None and "--json" not in args:
            argv.append("--json")
        return cls(
            argv, log_path, host=host, port=port, env=env, ready_path=ready_path,
            preexec=preexec, name=name,
        )  # fmt: skip

    # -- state ----------------------------------------------------------------------------------

    @property
    def proc(self) -> asyncio.subprocess.Process:
        """The running (or last) process; raises before the first start."""
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc

    @property
    def pid(self) -> int:
        """The process id (of the running or last process)."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status, ``None`` while running (or before the first start)."""
        return self._proc.returncode if self._proc is not None else None

    @property
    def alive(self) -> bool:
        """True while the process has not exited."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def url(self) -> str:
        """The WebSocket URL (the node's own, when it printed one)."""
        printed = self.listening.get("url")
        return str(printed) if printed else f"ws://{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        """``http://host:port`` (health, metrics and auth endpoints)."""
        return f"http://{self.host}:{self.port}"

    def log_text(self) -> str:
        """Everything logged so far ("" when the log cannot be read)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log (for error messages)."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- start ----------------------------------------------------------------------------------

    async def start(self, ready_timeout: float = 30.0) -> NodeProcess:
        """Spawn and wait until ready; on failure the process is killed and
        :class:`NodeStartError` names its exit status and log tail."""
        await self.spawn()
        try:
            await self.wait_ready(ready_timeout)
        except BaseException:
            await self.stop(grace=0)
            raise
        return self

    async def spawn(self) -> None:
        """Start the process (a restart keeps the port it had); returns without waiting."""
        if self.alive:
            return
        self._open_log()
        line_mode = self.ready_path is None
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if line_mode else self._log,
            stderr=self._log,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # its own process group, signalled as a whole on stop
            preexec_fn=_die_with_parent(self.preexec),
        )

    def _argv(self) -> list[str]:
        argv = list(self.argv)
        if self.port and "--port" in argv:
            argv[argv.index("--port") + 1] = str(self.port)
        return argv

    async def wait_ready(self, ready_timeout: float = 30.0) -> None:
        """Wait (bounded) for readiness; :class:`NodeStartError` when it exits or times out."""
        try:
            async with asyncio.timeout(ready_timeout):
                if self.ready_path is None:
                    await self._read_listening_line()
                else:
                    await self._poll_ready(self.ready_path)
        except TimeoutError:
            raise NodeStartError(
                f"{self.name} on port {self.port} not ready in {ready_timeout}s:\n"
                + self.log_tail()
            ) from None

    async def _read_listening_line(self) -> None:
        proc = self.proc
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        try:
            ready = json.loads(line)
            self.port = int(ready["port"])
        except (ValueError, KeyError, TypeError):
            with contextlib.suppress(TimeoutError):  # an error line: let it exit, for its status
                async with asyncio.timeout(2.0):
                    await proc.wait()
            raise self._start_error(f"printed {line[:500]!r}") from None
        self.listening = ready
        self._drain = asyncio.create_task(_discard(proc.stdout))

    async def _poll_ready(self, path: str) -> None:
        url = f"{self.http_url}{path}"
        async with ClientSession(timeout=ClientTimeout(total=2)) as http:
            while True:
                if not self.alive:
                    raise self._start_error("exited")
                with contextlib.suppress(ClientError, OSError, asyncio.TimeoutError):
                    async with http.get(url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)  # another process's state: bounded poll

    def _start_error(self, what: str) -> NodeStartError:
        status = f" (exit status {self.returncode})" if not self.alive else ""
        return NodeStartError(
            f"{self.name} on port {self.port} {what}{status} during start-up:\n{self.log_tail()}"
        )

    # -- stop -----------------------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Signal the process itself (not its group); nothing when it has exited."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def wait(self, within: float | None = None) -> int:
        """Its exit status, once it exits (``TimeoutError`` after ``within`` s)."""
        async with asyncio.timeout(within):
            return await self.proc.wait()

    async def kill(self) -> int:
        """SIGKILL: the node dies at once, holding whatever it had in flight."""
        self.send_signal(signal.SIGKILL)
        code = await self.wait(10.0)
        self._cancel_drain()
        return code

    async def terminate(self, within: float = 15.0) -> int:
        """SIGTERM (graceful shutdown) and its exit status; ``TimeoutError`` if it hangs."""
        self.send_signal(signal.SIGTERM)
        code = await self.wait(within)
        self._cancel_drain()
        return code

    async def stop(self, grace: float = 8.0, *, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` to the process group, SIGKILL to what is left after ``grace`` s; the exit
        status (``None`` if never started). Safe to call twice."""
        proc = self._proc
        if proc is None:
            return None
        pgid = proc.pid  # the group id equals the leader's pid (start_new_session)
        if proc.returncode is None:
            _signal_group(pgid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await proc.wait()
        _signal_group(pgid, signal.SIGKILL)  # a straggling child of the node goes too
        async with asyncio.timeout(10.0):
            code = await proc.wait()
        self._cancel_drain()
        self._close_log()
        return code

    async def restart(self, ready_timeout: float = 30.0, *, sig: int = signal.SIGTERM) -> None:
        """Stop (``sig``, SIGKILL for a crash) and start again on the same port."""
        await self.stop(sig=sig)
        await self.start(ready_timeout)

    def _cancel_drain(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None

    def _open_log(self) -> None:
        self._close_log()
        self._log = open(self.log_path, "ab")  # closed in stop()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _discard(stream: asyncio.StreamReader) -> None:
    """Keep reading so the pipe never fills and blocks the node's writes."""
    while await stream.read(65536):
        pass

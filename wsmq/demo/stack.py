"""``wsmq demo``: a private Redis, two gateway nodes, demo users and the browser page.

Everything runs on loopback and everything it starts is stopped on exit (Ctrl-C, SIGTERM,
SIGHUP): each node runs in its own process group, which is signalled as a whole, and on Linux
it also gets ``SIGTERM`` if the demo process itself dies (``PR_SET_PDEATHSIG``).

Layout for ``--port P``: nodes on ``P`` and ``P+1`` (WebSocket endpoint at ``/``, auth
endpoints at ``/auth/*``), the page on ``P+2``. The page's server also forwards ``/auth/*`` to
whichever node answers, so the page keeps working while one node is down and no CORS is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from aiohttp import web

from wsmq.demo.page import page_app
from wsmq.demo.users import (
    DEMO_USERS,
    SHARED_QUEUE,
    DemoUser,
    create_console_key,
    create_demo_users,
    create_queues,
)
from wsmq.errors import WsmqError
from wsmq.testing.nodes import DemoRedis, NodeProcess, NodeStartError
from wsmq.testing.redisproc import RedisProcess, free_port

__all__ = [
    "DEMO_USERS",
    "DemoStack",
    "DemoUser",
    "PortInUse",
    "create_demo_users",
    "run_demo",
]

HOST = "127.0.0.1"
#: Crashed nodes are restarted this many times in all before the demo gives up.
MAX_RESTARTS = 5


class PortInUse(WsmqError, OSError, code="port_in_use"):
    """One of the demo's ports is taken (checked before anything is started)."""


def _check_free(ports: Sequence[int]) -> None:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                raise PortInUse(
                    f"port {port} on {HOST} is in use: pick another first port with --port "
                    f"(the demo uses PORT, PORT+1 and PORT+2)"
                ) from None


class DemoUserInfo(TypedDict):
    """One user in ``wsmq demo --json``."""

    userName: str
    password: str
    id: str
    accessToken: str
    queues: list[str]
    publish: list[str]


class DemoInfo(TypedDict):
    """What ``wsmq demo --json`` prints once everything is ready."""

    page: str
    console: str
    adminKey: str
    nodes: list[str]
    redisUrl: str
    sharedQueue: str
    users: list[DemoUserInfo]
    pids: list[int]
    logs: list[str]


def _start_redis(redis: RedisProcess) -> None:
    os.makedirs(redis.data_dir, exist_ok=True)
    redis.start()


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    # The demo is self-contained: a WSMQ_MONGO_URL or WSMQ_USERS_FILE from the user's shell
    # must not point the nodes elsewhere. Logging preferences pass through.
    keep = {"WSMQ_LOG_LEVEL", "WSMQ_LOG_JSON", "WSMQ_REDIS_SERVER"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSMQ_") or k in keep}
    env.update(extra)
    return env


@dataclass
class DemoStack:
    """The whole demo: start it, use it, stop it (also an async context manager).

    ``port=0`` picks free ports (tests). ``redis_url`` uses an existing Redis instead of a
    private one (the demo then only adds its queues, and never flushes anything).
    """

    port: int = 8080
    redis_url: str | None = None
    token_ttl: int | None = None
    log_to: Path | None = None  # directory for node logs (default: the temp dir)
    python: str = sys.executable
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wsmq-demo-")))
    redis: RedisProcess | None = None
    nodes: list[NodeProcess] = field(default_factory=list)
    users: list[DemoUser] = field(default_factory=list)
    #: The API key (scopes read, publish, admin) the banner prints for the console.
    admin_key: str = ""
    page_port: int = 0
    _runner: web.AppRunner | None = None
    _secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    @property
    def node_urls(self) -> list[str]:
        """WebSocket URLs of the nodes."""
        return [f"ws://{HOST}:{n.port}/" for n in self.nodes]

    @property
    def node_http_urls(self) -> list[str]:
        """HTTP base URLs of the nodes (``/auth/*``, ``/healthz``)."""
        return [f"http://{HOST}:{n.port}" for n in self.nodes]

    @property
    def page_url(self) -> str:
        """Where to point a browser."""
        return f"http://{HOST}:{self.page_port}/"

    @property
    def console_url(self) -> str:
        """The operator console, served by the first node."""
        return f"http://{HOST}:{self.nodes[0].port}/console"

    @property
    def users_file(self) -> Path:
        return self.workdir / "users.json"

    @property
    def queue_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        assert self.redis is not None
        return self.redis.url

    def _ports(self) -> tuple[int, int, int]:
        if self.port:
            ports = (self.port, self.port + 1, self.port + 2)
            _check_free(ports)
            return ports
        picked: list[int] = []
        while len(picked) < 3:  # the kernel may hand out a port twice in a row
            port = free_port(HOST)
            if port not in picked:
                picked.append(port)
        return picked[0], picked[1], picked[2]

    async def start(self, start_timeout: float = 30.0) -> DemoStack:
        """Start Redis, users, queues, both nodes and the page; return once all are ready."""
        try:
            async with asyncio.timeout(start_timeout):
                await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        p1, p2, p3 = self._ports()
        self.page_port = p3
        if not self.redis_url:
            self.redis = DemoRedis(data_dir=str(self.workdir / "redis"))
            # Started from this thread, not a worker: PR_SET_PDEATHSIG fires when the thread
            # that spawned the child exits. Redis is ready in milliseconds.
            _start_redis(self.redis)
        self.users = await create_demo_users(self.users_file)
        self.admin_key = await create_console_key(self.users_file)
        await create_queues(self.queue_redis_url, [*(u.id for u in self.users), SHARED_QUEUE])
        page_origins = [f"http://{h}:{p3}" for h in (HOST, "localhost")]
        env = {
            "WSMQ_SECRET": self._secret,  # in the environment, not in `ps` output
            "WSMQ_ALLOWED_ORIGINS": ",".join(page_origins),
            "WSMQ_SHUTDOWN_TIMEOUT": "3",
        }
        if self.token_ttl:
            env["WSMQ_TOKEN_TTL"] = str(self.token_ttl)
        logs = self.log_to or self.workdir
        for port in (p1, p2):
            cmd = [
                self.python, "-m", "wsmq", "serve",
                "--host", HOST, "--port", str(port),
                "--redis-url", self.queue_redis_url,
                "--users-file", str(self.users_file),
            ]  # fmt: skip
            node = NodeProcess(
                cmd, logs / f"node-{port}.log", host=HOST, port=port, env=_child_env(env),
                ready_path="/readyz",
            )  # fmt: skip
            self.nodes.append(node)
        for node in self.nodes:
            await node.spawn()
        await asyncio.gather(*(n.wait_ready(20.0) for n in self.nodes))
        app = page_app(self.node_urls, self.node_http_urls, [(u.name, u.id) for u in self.users])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, p3).start()

    async def restart_node(self, index: int, *, kill: bool = False) -> None:
        """Stop node ``index`` (SIGTERM, or SIGKILL with ``kill``) and start it again."""
        await self.nodes[index].restart(20.0, sig=signal.SIGKILL if kill else signal.SIGTERM)

    async def stop(self) -> None:
        """Stop everything this stack started and remove its temp dir. Safe to call twice."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.gather(*(n.stop() for n in self.nodes), return_exceptions=True)
        if self.redis is not None:
            await asyncio.to_thread(self.redis.cleanup)
            self.redis = None
        shutil.rmtree(self.workdir, ignore_errors=True)  # users file, Redis data, default logs

    def child_pids(self) -> list[int]:
        """PIDs of the processes this stack started (nodes and Redis) that are still known."""
        pids = [n.pid for n in self.nodes if n.alive]
        if self.redis is not None and self.redis.pid is not None:
            pids.append(self.redis.pid)
        return pids

    def info(self) -> DemoInfo:
        """What ``wsmq demo --json`` prints once everything is ready."""
        return {
            "page": self.page_url,
            "console": self.console_url,
            "adminKey": self.admin_key,
            "nodes": self.node_urls,
            "redisUrl": self.queue_redis_url,
            "sharedQueue": SHARED_QUEUE,
            "users": [
                {
                    "userName": u.name,
                    "password": u.password,
                    "id": u.id,
                    "accessToken": u.access_token,
                    "queues": [u.id, *u.queues],
                    "publish": list(u.publish),
                }
                for u in self.users
            ],
            "pids": self.child_pids(),
            "logs": [str(n.log_path) for n in self.nodes],
        }

    async def __aenter__(self) -> DemoStack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _venv_command(name: str, fallback: str) -> str:
    """How to run ``name`` from this interpreter's bin dir, as short as it is unambiguous."""
    exe = Path(sys.executable).with_name(name)
    on_path = shutil.which(name)
    if on_path and Path(on_path).resolve() == exe.resolve():
        return name
    if exe.exists():
        with contextlib.suppress(ValueError):
            return str(exe.relative_to(Path.cwd()))
        return str(exe)
    return fallback


def banner(stack: DemoStack) -> str:
    """The text printed when the demo is ready: URLs, users and commands to paste."""
    alice, bob = stack.users[0], stack.users[1]
    wsmq = _venv_command("wsmq", f"{sys.executable} -m wsmq")
    python = _venv_command("python", sys.executable)
    redis_url = stack.queue_redis_url
    login = json.dumps({"userName": bob.name, "password": bob.password}, separators=(",", ":"))
    lines = [
        "wsmq demo is running.",
        "",
        f"  Page        {stack.page_url}",
        f"  Nodes       {'  '.join(stack.node_urls)}",
        f"  Redis       {redis_url}" + ("" if stack.redis_url else " (private)"),
        f"  Console     {stack.console_url}  admin key: {stack.admin_key}",
        "",
        "  Users       name     password      id (= the user's own queue)",
        *(f"              {u.name:<8} {u.password:<13} {u.id}" for u in stack.users),
        f"  Shared      {SHARED_QUEUE} (both may subscribe and send; subscribers compete)",
        "",
        "Try it:",
        f"  1. Open the page, log in as {alice.name} / {alice.password} and subscribe to her "
        "queue (prefilled).",
        "  2. Publish to her queue from a shell:",
        f"       {wsmq} send {alice.id} 'hello {alice.name}' --redis-url {redis_url}",
        f"  3. Chat as {bob.name} on the second node (type a line, press Enter); in the page, "
        f"send to {bob.name}'s queue:",
        f"       {python} examples/chat/chat.py --url {stack.node_urls[1]} --user {bob.name} "
        f"--password {bob.password} --to {alice.id}",
        "  Tokens for your own client (a login issues a new access token and revokes the "
        "previous one):",
        f"       curl -s -X POST {stack.node_http_urls[0]}/auth/login "
        f"-H 'content-type: application/json' -d '{login}'",
        "",
        f"Node logs: {', '.join(str(n.log_path) for n in stack.nodes)}",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


async def run_demo(
    *,
    port: int = 8080,
    redis_url: str | None = None,
    token_ttl: int | None = None,
    as_json: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Run the demo until SIGINT/SIGTERM/SIGHUP; returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    stack = DemoStack(port=port, redis_url=redis_url, token_ttl=token_ttl)
    try:
        starting = asyncio.ensure_future(stack.start())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # interrupted while starting
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            return 130
        stopped.cancel()
        starting.result()  # raises a start-up error
        out(json.dumps(stack.info()) if as_json else banner(stack))
        restarts = 0
        while not stop.is_set():
            for node in [n for n in stack.nodes if not n.alive]:
                # Keep the demo whole: a crashed node comes back, a few times.
                restarts += 1
                note = f"node on port {node.port} exited ({node.returncode}); see {node.log_path}"
                if restarts > MAX_RESTARTS:  # reported by the CLI like every other error
                    raise NodeStartError(f"{note}; gave up after {MAX_RESTARTS} restarts")
                out(json.dumps({"restarting": node.port}) if as_json else f"{note}: restarting")
                await node.spawn()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        out("stopping the demo…" if not as_json else json.dumps({"stopping": True}))
        return 0
    finally:
        await stack.stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)

"""The systems under test: wsmq (``wsmq serve`` nodes) and its two peers, each on its own Redis.

A :class:`System` starts ``nodes`` servers against a private redis-server and returns a
:class:`Running` handle describing how load generators reach them: WebSocket URLs, handshake
headers, which client protocols it speaks and how publishers feed it (RSMQ queue or pub/sub).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.procs import PEERS, Child, ChildError, node_env, node_modules, wait_http_ok
from wsmq.queue.scripts import SCRIPTS
from wsmq.testing.redisproc import RedisProcess, free_port

SEND_SCRIPT = SCRIPTS["send"].source

Kind = Literal["rsmq", "pubsub"]


class SystemUnavailable(RuntimeError):
    """The system cannot run on this machine (missing Node.js, wsmq gateway not built, ...)."""


@dataclass
class Running:
    """A started system: where its nodes listen and how to talk to them."""

    name: str
    kind: Kind
    redis: RedisProcess
    urls: list[str]
    children: list[Child]
    headers: dict[str, str] = field(default_factory=dict)
    protocols: tuple[str, ...] = ("legacy",)
    #: The Lua source publishers run to send (wsmq's own send script: one round trip, as
    #: ``wsmq.send_message``); ``None``: the npm ``rsmq`` client (three round trips).
    send_script: str | None = None

    @property
    def pids(self) -> list[int]:
        return [c.pid for c in self.children]

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.children), return_exceptions=True)
        await asyncio.to_thread(self.redis.cleanup)


class System:
    """Base class: a named system that can be started for one scenario."""

    name = "system"
    kind: Kind = "rsmq"
    label = ""

    def check(self) -> None:
        """Raise :class:`SystemUnavailable` when this machine cannot run the system."""

    def plan(self, queues: list[str]) -> None:
        """Learn every queue the run will use before the first start (wsmq authorizes them)."""

    async def close(self) -> None:
        """Release what the system kept between scenarios (credentials, temporary files)."""

    async def start(self, nodes: int, queues: list[str]) -> Running:
        redis = RedisProcess(extra_args=("--maxclients", "20000"))
        await asyncio.to_thread(redis.start)
        try:
            return await self._start_nodes(redis, nodes, queues)
        except BaseException:
            await asyncio.to_thread(redis.cleanup)
            raise

    async def _start_nodes(self, redis: RedisProcess, nodes: int, queues: list[str]) -> Running:
        raise NotImplementedError

    @staticmethod
    async def _spawn_nodes(
        name: str, nodes: int, argv_for_port: list[list[str]], env: dict[str, str] | None = None
    ) -> tuple[list[Child], list[int]]:
        children: list[Child] = []
        ports = [int(argv[argv.index("--port") + 1]) for argv in argv_for_port]
        try:
            for i, argv in enumerate(argv_for_port):
                children.append(await Child.start(f"{name}[{i}]", argv, env=env))
            await asyncio.gather(
                *(
                    wait_http_ok(f"http://127.0.0.1:{port}/healthz", 20.0, child)
                    for port, child in zip(ports, children, strict=True)
                )
            )
        except BaseException:
            await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
            raise
        return children, ports


class RsmqWorkerBridge(System):
    """The original's architecture: rsmq-worker polling per socket, delete before delivery."""

    name = "rsmq-worker"
    kind: Kind = "rsmq"
    label = "Node ws + rsmq-worker (polling, deletes on send)"

    def check(self) -> None:
        if shutil.which("node") is None:
            raise SystemUnavailable("Node.js is not installed")
        if not (node_modules() / "rsmq-worker").is_dir():
            raise SystemUnavailable(f"npm packages missing in {node_modules()} (run scripts/bench)")

    async def _start_nodes(self, redis: RedisProcess, nodes: int, queues: list[str]) -> Running:
        script = str(PEERS / "rsmq_worker_bridge.js")
        argvs = [
            ["node", script, "--port", str(free_port()), "--redis-url", redis.url]
            for _ in range(nodes)
        ]
        children, ports = await self._spawn_nodes(self.name, nodes, argvs, env=node_env())
        urls = [f"ws://127.0.0.1:{p}/" for p in ports]
        return Running(self.name, self.kind, redis, urls, children)


class PubSubBridge(System):
    """At-most-once fan-out over Redis PUBLISH/SUBSCRIBE (aiohttp), no queue."""

    name = "pubsub"
    kind: Kind = "pubsub"
    label = "aiohttp + Redis pub/sub (at-most-once)"

    async def _start_nodes(self, redis: RedisProcess, nodes: int, queues: list[str]) -> Running:
        argvs = [
            [sys.executable, "-m", "bench.peers.pubsub_bridge", "--port", str(free_port()),
             "--redis-url", redis.url]
            for _ in range(nodes)
        ]  # fmt: skip
        children, ports = await self._spawn_nodes(self.name, nodes, argvs)
        urls = [f"ws://127.0.0.1:{p}/" for p in ports]
        return Running(self.name, self.kind, redis, urls, children)


def wsmq_command() -> list[str]:
    """How to run the ``wsmq`` CLI: the venv's entry point next to this Python, or ``-m wsmq``."""
    script = Path(sys.executable).with_name("wsmq")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wsmq"]


async def _run_json(argv: list[str], wait_s: float = 30.0) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(wait_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SystemUnavailable(f"`{shlex.join(argv[-6:])}` timed out") from None
    text = out.decode().strip().splitlines()
    try:
        obj = json.loads(text[-1]) if text else None
    except ValueError:
        obj = None
    if proc.returncode != 0 or not isinstance(obj, dict) or "error" in obj:
        detail = (err.decode().strip() or out.decode().strip())[-300:]
        raise SystemUnavailable(f"`wsmq {argv[len(wsmq_command())]}` failed: {detail}")
    return obj


class Wsmq(System):
    """wsmq itself: ``wsmq serve`` nodes with an embedded users file and HS256 tokens."""

    name = "wsmq"
    kind: Kind = "rsmq"
    label = "wsmq serve (realtime wake-up, batch receive; legacy and wsmq.v1/ack)"
    # wsmq runs with its defaults (valid wsmq.v1 acks do not count toward the frame rate
    # limit) but one: every benchmark client is the same user, so no per-user socket cap.
    DEFAULT_ARGS: tuple[str, ...] = ("--max-connections-per-user", "0")

    def __init__(self, extra_args: list[str] | None = None) -> None:
        env_args = shlex.split(os.environ.get("WSMQ_BENCH_SERVE_ARGS", ""))
        self.extra_args = [*self.DEFAULT_ARGS, *(extra_args or []), *env_args]
        self.authorized: set[str] = set()
        self._tmpdir: str | None = None
        self._user_info: tuple[str, str, dict[str, object]] | None = None
        self._headers: dict[str, str] | None = None

    def check(self) -> None:
        # The gateway is built in parallel with the harness: until `serve`, `user add` and
        # `token` exist, the run goes on with the peers and says why wsmq is missing.
        from wsmq.cli import build_parser

        try:
            parser = build_parser()
        except Exception as exc:
            raise SystemUnavailable(f"the wsmq CLI does not load: {exc}") from exc
        commands = _subcommands(parser)
        missing = [c for c in ("serve", "user", "token") if c not in commands]
        if not missing and "add" not in _subcommands(commands["user"]):
            missing.append("user add")
        if missing:
            raise SystemUnavailable(
                f"`wsmq {', '.join(missing)}` not available yet (gateway not built)"
            )

    def plan(self, queues: list[str]) -> None:
        self.authorized.update(queues)

    async def _user(self, queues: list[str]) -> tuple[str, str, dict[str, object]]:
        """One user authorized for every queue of the run: (users file, secret, user JSON)."""
        if self._user_info is not None and self.authorized.issuperset(queues):
            return self._user_info
        self.authorized.update(queues)
        self._headers = None
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="wsmq-bench-")
        users = str(Path(self._tmpdir, "users.json"))
        secret = secrets.token_hex(32)  # hex: never starts with "-" (argparse)
        user = await _run_json(
            [*wsmq_command(), "user", "add", f"bench{secrets.token_hex(4)}", "--queues",
             ",".join(sorted(self.authorized)) or "bench", "--users-file", users, "--json"]
        )  # fmt: skip
        self._user_info = (users, secret, user)
        return self._user_info

    async def _token_headers(self, secret: str, user: dict[str, object]) -> dict[str, str]:
        if self._headers is None:
            token = await _run_json(
                [*wsmq_command(), "token", str(user["id"]), "--secret", secret, "--ttl", "7200",
                 "--json"]
            )  # fmt: skip
            self._headers = {
                "x-token": str(token["token"]),
                "x-access-token": str(user["accessToken"]),
            }
        return self._headers

    async def _start_nodes(self, redis: RedisProcess, nodes: int, queues: list[str]) -> Running:
        users, secret, user = await self._user(queues)
        argvs = [
            [*wsmq_command(), "serve", "--host", "127.0.0.1", "--port", str(free_port()),
             "--redis-url", redis.url, "--users-file", users, "--secret", secret,
             *self.extra_args]
            for _ in range(nodes)
        ]  # fmt: skip
        # The token is only needed by clients: make it while the nodes start.
        token_task = asyncio.ensure_future(self._token_headers(secret, user))
        try:
            children, ports = await self._spawn_nodes(self.name, nodes, argvs)
        except ChildError as exc:
            token_task.cancel()
            raise SystemUnavailable(f"`wsmq serve` did not start: {exc}") from exc
        try:
            headers = await token_task
        except BaseException:
            await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
            raise
        urls = [f"ws://127.0.0.1:{p}/" for p in ports]
        # WSMQ_BENCH_RSMQ_PUBLISHER=1: publish to wsmq with the npm rsmq client instead.
        script = None if os.environ.get("WSMQ_BENCH_RSMQ_PUBLISHER") == "1" else SEND_SCRIPT
        return Running(
            self.name, self.kind, redis, urls, children, headers, ("legacy", "v1"), script
        )

    async def close(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


ALL_SYSTEMS: dict[str, type[System]] = {
    "wsmq": Wsmq,
    "rsmq-worker": RsmqWorkerBridge,
    "pubsub": PubSubBridge,
}

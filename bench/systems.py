"""The systems under test: wsmq (``wsmq serve`` nodes) and its two peers, each on its own Redis.

A :class:`System` starts ``nodes`` servers against a private redis-server and returns a
:class:`Running` handle describing how load generators reach them: WebSocket URLs, handshake
headers, which client protocols it speaks and how publishers feed it (RSMQ queue or pub/sub).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.procs import PEERS, ROOT, node_env, node_modules
from wsmq.queue.scripts import SCRIPTS
from wsmq.testing.nodes import NodeProcess, NodeStartError, wsmq_command
from wsmq.testing.redisproc import RedisProcess, free_port
from wsmq.testing.users import make_users

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
    servers: list[NodeProcess]
    headers: dict[str, str] = field(default_factory=dict)
    protocols: tuple[str, ...] = ("legacy",)
    #: The Lua source publishers run to send (wsmq's own send script: one round trip, as
    #: ``wsmq.send_message``); ``None``: the npm ``rsmq`` client (three round trips).
    send_script: str | None = None

    logs: Path | None = None  # the servers' log directory, removed on stop

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    async def stop(self) -> None:
        await _stop_all(self.servers)
        await asyncio.to_thread(self.redis.cleanup)
        if self.logs is not None:
            shutil.rmtree(self.logs, ignore_errors=True)


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
        name: str, argvs: list[list[str]], env: dict[str, str] | None = None
    ) -> tuple[list[NodeProcess], Path]:
        """Start one server per argv (each has ``--port P``), ready once ``/healthz`` is 200;
        their logs go to a new directory (returned)."""
        logs = Path(tempfile.mkdtemp(prefix=f"wsmq-bench-{name}-"))
        servers = [
            NodeProcess(
                argv, logs / f"{name}-{i}.log", port=int(argv[argv.index("--port") + 1]),
                env=env, cwd=ROOT, ready_path="/healthz", name=f"{name}[{i}]",
            )
            for i, argv in enumerate(argvs)
        ]  # fmt: skip
        try:
            await asyncio.gather(*(s.start(ready_timeout=20.0) for s in servers))
        except BaseException:
            await _stop_all(servers)
            shutil.rmtree(logs, ignore_errors=True)
            raise
        return servers, logs


async def _stop_all(servers: list[NodeProcess]) -> None:
    await asyncio.gather(*(s.stop(grace=5.0) for s in servers), return_exceptions=True)


def _ws_urls(servers: list[NodeProcess]) -> list[str]:
    return [f"ws://127.0.0.1:{s.port}/" for s in servers]


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
        servers, logs = await self._spawn_nodes(self.name, argvs, env=node_env())
        return Running(self.name, self.kind, redis, _ws_urls(servers), servers, logs=logs)


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
        servers, logs = await self._spawn_nodes(self.name, argvs)
        return Running(self.name, self.kind, redis, _ws_urls(servers), servers, logs=logs)


class Wsmq(System):
    """wsmq itself: ``wsmq serve`` nodes with an embedded users file and HS256 tokens."""

    name = "wsmq"
    kind: Kind = "rsmq"
    label = "wsmq serve (realtime wake-up, batch receive; legacy and wsmq.v1/ack)"
    # wsmq runs with its defaults (valid wsmq.v1 acks do not count toward the frame rate
    # limit) but one: every benchmark client is the same user, so no per-user socket cap.
    DEFAULT_ARGS: tuple[str, ...] = ("--max-connections-per-user", "0")

    def __init__(
        self,
        extra_args: list[str] | None = None,
        *,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """``command`` runs the wsmq CLI (default :func:`wsmq_command`; e.g. under a profiler),
        ``env`` is the nodes' environment (default this process's)."""
        env_args = shlex.split(os.environ.get("WSMQ_BENCH_SERVE_ARGS", ""))
        self.extra_args = [*self.DEFAULT_ARGS, *(extra_args or []), *env_args]
        self.command = command or wsmq_command()
        self.env = env
        self.authorized: set[str] = set()
        self._tmpdir: str | None = None
        self._user_info: tuple[Path, str, dict[str, str]] | None = None

    def check(self) -> None:
        from wsmq.cli import build_parser

        try:
            parser = build_parser()
        except Exception as exc:
            raise SystemUnavailable(f"the wsmq CLI does not load: {exc}") from exc
        if "serve" not in _subcommands(parser):
            raise SystemUnavailable("`wsmq serve` not available")

    def plan(self, queues: list[str]) -> None:
        self.authorized.update(queues)

    async def _user(self, queues: list[str]) -> tuple[Path, str, dict[str, str]]:
        """One user authorized for every queue of the run: (users file, secret, headers)."""
        if self._user_info is not None and self.authorized.issuperset(queues):
            return self._user_info
        self.authorized.update(queues)
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="wsmq-bench-")
        users = Path(self._tmpdir, "users.json")
        secret = secrets.token_hex(32)  # hex: never starts with "-" (argparse)
        (user,) = await make_users(
            users, names=[f"bench{secrets.token_hex(4)}"],
            queues=sorted(self.authorized) or ["bench"], secret=secret, ttl=7200,
        )  # fmt: skip
        self._user_info = (users, secret, user.headers)
        return self._user_info

    async def _start_nodes(self, redis: RedisProcess, nodes: int, queues: list[str]) -> Running:
        users, secret, headers = await self._user(queues)
        argvs = [
            [*self.command, "serve", "--host", "127.0.0.1", "--port", str(free_port()),
             "--redis-url", redis.url, "--users-file", str(users), "--secret", secret,
             *self.extra_args]
            for _ in range(nodes)
        ]  # fmt: skip
        try:
            servers, logs = await self._spawn_nodes(self.name, argvs, env=self.env)
        except NodeStartError as exc:
            raise SystemUnavailable(f"`wsmq serve` did not start: {exc}") from exc
        # WSMQ_BENCH_RSMQ_PUBLISHER=1: publish to wsmq with the npm rsmq client instead.
        script = None if os.environ.get("WSMQ_BENCH_RSMQ_PUBLISHER") == "1" else SEND_SCRIPT
        return Running(
            self.name, self.kind, redis, _ws_urls(servers), servers, headers, ("legacy", "v1"),
            script, logs,
        )  # fmt: skip

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

"""``scripts/demo`` / ``wsmq demo``: start, serve the page, stop cleanly, leave nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.demo.helpers import ROOT, WSMQ, pid_alive
from wsmq.cli import main
from wsmq.demo import DemoStack, banner
from wsmq.demo.page import STATIC_DIR
from wsmq.queue import Queues

pytestmark = pytest.mark.slow
STAMP = ROOT / ".venv" / ".wsmq-installed"


def _start(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)  # bounded: a hang fails here
    line = proc.stdout.readline() if ready else ""  # --json: one line once all is ready
    if not line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"demo did not start: {err}")
    return proc, json.loads(line)


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        time.sleep(0.05)
    return alive


async def _wait_ready(url: str) -> None:
    async with (
        asyncio.timeout(30),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
    ):
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)  # polling a port that is not open yet: no event to await


async def _check_serving(info: dict[str, Any]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(info["page"]) as resp:
            assert resp.status == 200
            assert "wsmq" in await resp.text()
            assert "connect-src" in resp.headers["Content-Security-Policy"]
        async with http.get(info["page"] + "config.json") as resp:
            assert (await resp.json())["nodes"] == info["nodes"]
        for node in info["nodes"]:
            async with http.get(node.replace("ws://", "http://") + "healthz") as resp:
                assert resp.status == 200
        # The operator console on the first node, and the admin key the demo printed.
        async with http.get(info["console"]) as resp:  # redirected to /console/
            assert resp.status == 200 and "wsmq console" in await resp.text()
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
        me = info["console"].removesuffix("console") + "api/me"
        async with http.get(me, headers={"Authorization": f"Bearer {info['adminKey']}"}) as resp:
            assert resp.status == 200
            assert {"read", "admin"} <= set((await resp.json())["scopes"])
        alice = info["users"][0]
        login = {"userName": alice["userName"], "password": alice["password"]}
        async with http.post(info["page"] + "auth/login", json=login) as resp:
            assert resp.status == 200
            assert set(await resp.json()) >= {"token", "accessToken", "expiresIn"}


@pytest.mark.parametrize("how", ["scripts/demo + SIGINT", "wsmq demo + SIGTERM"])
async def test_demo_serves_the_page_and_stops_cleanly(how: str) -> None:
    env = dict(os.environ)
    if how.startswith("scripts/demo"):
        if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
            pytest.skip("scripts/demo uses the checkout's .venv; these tests run elsewhere")
        if not STAMP.exists() or STAMP.stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime:
            env["WSMQ_DEMO_SKIP_INSTALL"] = "1"  # never reinstall the shared venv mid-suite
        cmd, sig = [str(ROOT / "scripts" / "demo"), "--port", "0", "--json"], signal.SIGINT
    else:
        cmd, sig = [WSMQ, "demo", "--port", "0", "--json"], signal.SIGTERM
    proc, info = _start(cmd, env)
    try:
        assert len(info["pids"]) == 3  # two nodes and Redis
        assert all(pid_alive(p) for p in info["pids"])
        await _check_serving(info)
        logs_dir = Path(info["logs"][0]).parent
        assert logs_dir.is_dir()
        if sig == signal.SIGTERM:
            # A node that crashes is restarted by the demo (and reported).
            os.kill(info["pids"][0], signal.SIGKILL)
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "no restart reported"
            port = int(info["nodes"][0].rsplit(":", 1)[1].strip("/"))
            assert json.loads(proc.stdout.readline()) == {"restarting": port}
            await _wait_ready(info["nodes"][0].replace("ws://", "http://") + "readyz")
        started = set(info["pids"]) | set(_children(proc.pid))  # incl. a restarted node
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"stopping": True}
    assert len(started) == (4 if sig == signal.SIGTERM else 3)
    assert _wait_gone(sorted(started)) == []
    assert not logs_dir.exists()  # the temp dir (users file, Redis data) is gone too


def test_nodes_and_redis_die_with_a_killed_demo() -> None:
    """Even SIGKILL of the demo (no cleanup code runs) leaves nothing behind on Linux."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    proc, info = _start([WSMQ, "demo", "--port", "0", "--json"], dict(os.environ))
    try:
        proc.kill()
        proc.wait(10)
        alive = _wait_gone(info["pids"])
    finally:
        for pid in info["pids"]:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(Path(info["logs"][0]).parent, ignore_errors=True)  # no cleanup ran
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert alive == []


async def test_demo_users_banner_and_auth_relay(tmp_path: Path) -> None:
    """Users may publish to each other; the banner's commands work; the relay fails over."""
    async with DemoStack(port=0, log_to=tmp_path) as stack:
        alice, bob = stack.users
        assert set(alice.publish) == {"chat", bob.id}
        assert set(bob.publish) == {"chat", alice.id}
        assert alice.queues == ("chat",) and bob.queues == ("chat",)
        users_file = stack.users_file
        assert users_file.stat().st_mode & 0o077 == 0  # hashes inside: owner only

        # The commands the banner tells users to paste work as printed.
        text = banner(stack)
        assert stack.page_url in text and all(url in text for url in stack.node_urls)
        assert f"{stack.console_url}  admin key: {stack.admin_key}" in text
        commands = [line.strip() for line in text.splitlines() if "--redis-url" in line]
        commands += [line.strip() for line in text.splitlines() if line.strip().startswith("curl")]
        assert len(commands) == 2
        for command in commands:
            if command.startswith("curl") and shutil.which("curl") is None:
                continue
            argv = shlex.split(command)
            if argv[0].endswith("wsmq"):
                argv[0] = WSMQ
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT)
            assert out.returncode == 0, out.stderr
            if argv[0] == "curl":
                assert "accessToken" in json.loads(out.stdout)

        # The page's /auth relay answers from whichever node is up.
        await stack.nodes[0].stop()
        async with aiohttp.ClientSession() as http:
            body = {"userName": bob.name, "password": bob.password}
            async with http.post(stack.page_url + "auth/login", json=body) as resp:
                assert resp.status == 200
            body["password"] = "wrong"
            async with http.post(stack.page_url + "auth/login", json=body) as resp:
                assert resp.status == 401  # the node's answer is relayed as is
                assert (await resp.json())["error"]
            await stack.nodes[1].stop()
            async with http.post(stack.page_url + "auth/login", json=body) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "unavailable"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--port", "80"], "1024..65533"),
        (["--port", "http"], "not a port number"),
        (["--token-ttl", "1"], "5..86400"),
    ],
)
def test_demo_rejects_bad_flags(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", *argv]) == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("wsmq demo: error: ") and error in last_line


def test_static_page_needs_no_internet() -> None:
    static = STATIC_DIR
    assert static == ROOT / "wsmq" / "demo" / "static"  # the demo package owns its page
    for name in ("index.html", "app.js", "view.js", "wsmq-client.js", "style.css"):
        text = (static / name).read_text()
        assert "https://" not in text and "//cdn" not in text, name
        assert "@import" not in text, name
    html = (static / "index.html").read_text()
    assert 'role="log"' in html and 'aria-live="polite"' in html
    for field in ("user-name", "password", "subscribe-queue", "send-queue", "send-message"):
        assert f'<label for="{field}"' in html


async def test_demo_on_an_existing_redis(redis_url: str, tmp_path: Path) -> None:
    """--redis-url: no private Redis is started; the demo's queues are created there."""
    async with DemoStack(port=0, redis_url=redis_url, log_to=tmp_path) as stack:
        info = stack.info()
        assert info["redisUrl"] == redis_url
        assert len(info["pids"]) == 2  # the two nodes only
        queues = Queues.from_url(redis_url)
        try:
            names = set(await queues.list_queues())
        finally:
            await queues.close()
        assert names == {"chat", *(u.id for u in stack.users)}


def test_demo_reports_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    """A taken port is a clear one-line error (exit 1), and nothing is left running."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        if port > 65533:
            pytest.skip("the kernel picked a port too high for --port")
        before = set(_children())
        code = main(["demo", "--port", str(port), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 1
    assert out["error"] == "port_in_use"
    assert str(port) in out["message"]
    assert _wait_gone(sorted(set(_children()) - before)) == []


def _children(parent: int | None = None) -> list[int]:
    """PIDs whose parent is ``parent`` (default: this test process)."""
    me = str(parent or os.getpid())
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def test_demo_reports_an_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    assert main(["demo", "--port", "0", "--redis-url", url, "--json"]) == 1
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["error"] == "redis_unavailable" and url in out["message"]

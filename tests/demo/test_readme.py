"""The README's quick start, run as printed (placeholders filled in) in a scratch directory.

Its shell block (user, queue, node, token, send), its two `curl` calls to ``/auth/login`` and
``/auth/token``, and its Python client (``wsmq.client``: tokens from ``/auth/token``, a send to
``chat``, a message received and acked) run against a private Redis and a real ``wsmq serve``.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.demo.helpers import ROOT
from wsmq.testing.redisproc import free_port

pytestmark = pytest.mark.slow
README = (ROOT / "README.md").read_text()
WSMQ = [sys.executable, "-m", "wsmq"]


def block(after: str, lang: str) -> str:
    """The first ``lang`` code block after the text ``after``."""
    return README.split(after, 1)[1].split(f"```{lang}\n", 1)[1].split("```")[0]


def commands(text: str) -> list[str]:
    """Shell lines without comments, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{shlex.join(argv)}\n{proc.stderr}"
    return proc.stdout


def test_readme_quick_start_works_as_printed(redis_url: str, tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSMQ_")}
    found: dict[str, str] = {}  # placeholder -> the real value, as the reader fills it in

    def fill(line: str) -> str:
        for placeholder, value in found.items():
            line = line.replace(placeholder, value)
        return line.replace(":8080", f":{port}").replace("--port 8080", f"--port {port}")

    node: subprocess.Popen[str] | None = None
    try:
        for line in commands(block("By hand", "bash")):
            if line.startswith("pip install"):
                continue  # this checkout is the installed package
            if line.startswith("export "):
                name, value = line.removeprefix("export ").split("=", 1)
                if name == "REDIS":
                    value = redis_url
                elif value.startswith('"$(openssl'):
                    value = "q" * 64
                env[name] = value
                continue
            argv = shlex.split(fill(line.removesuffix("&").strip()))
            argv = [env[a[1:]] if a.startswith("$") else a for a in argv]
            assert argv[0] == "wsmq", line
            argv = [*WSMQ, *argv[1:]]
            if line.endswith("&"):
                node = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)  # fmt: skip
                assert node.stdout is not None
                ready, _, _ = select.select([node.stdout], [], [], 30)
                assert ready and "listening" in node.stdout.readline()
                continue
            printed = run(argv, tmp_path, env)
            out: dict[str, Any] = json.loads(printed) if "--json" in argv else {}
            if argv[len(WSMQ) : len(WSMQ) + 2] == ["user", "add"]:
                found.update({"6b04...": out["id"], "gy7q...": out["password"]})
            if "token" in argv:
                assert out["expiresIn"] == 900 and out["token"].startswith("eyJ")

        # The two curl calls: log in, then a fresh x-token for the new access token.
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        login_cmd, token_cmd = commands(block("from any node:", "bash"))
        login = json.loads(run(shlex.split(fill(login_cmd)), tmp_path, env))
        assert set(login) == {"token", "accessToken", "expiresIn", "userId"}
        found.update({"Zk3p...": login["accessToken"], "eyJ...": login["token"]})
        fresh = json.loads(run(shlex.split(fill(token_cmd)), tmp_path, env))
        assert set(fresh) == {"token", "expiresIn", "userId"}
        assert fresh["userId"] == found["6b04..."]

        # The Python client: gets "hello alice" (sent above), acks it, sends to chat.
        client = tmp_path / "client.py"
        code = block("**Python client**", "python")
        for placeholder, value in found.items():
            code = code.replace(f'"{placeholder}"', json.dumps(value))
        client.write_text(fill(code))
        proc = subprocess.Popen([sys.executable, str(client)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**env, "PYTHONUNBUFFERED": "1"})  # fmt: skip
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready and proc.stdout.readline() == "hello alice\n"
            # d.ack() deleted it (the client sends its acks from the next loop turn).
            inbox = [*WSMQ, "queue", "stats", found["6b04..."], "--redis-url", redis_url]
            deadline = time.monotonic() + 15
            while json.loads(run([*inbox, "--json"], tmp_path, env))["msgs"]:
                assert time.monotonic() < deadline, "the README client's ack did not land"
                time.sleep(0.1)  # Redis state of another process: bounded poll
        finally:
            proc.kill()
            _, err = proc.communicate()
        stats = [*WSMQ, "queue", "stats", "chat", "--redis-url", redis_url, "--json"]
        assert json.loads(run(stats, tmp_path, env))["totalsent"] == 1, err  # its send("chat")
    finally:
        if node is not None:
            node.terminate()
            node.communicate(timeout=30)

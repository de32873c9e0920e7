"""``wsmq apikey add|list|revoke``: the printed key works against a real node; one subprocess."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wsmq.cli import main

from .conftest import Api, StartNode


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WSMQ_SECRET", "WSMQ_USERS_FILE", "WSMQ_MONGO_URL", "WSMQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


async def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = await asyncio.to_thread(main, list(argv))  # the CLI runs its own event loop
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # --json prints exactly one object
    return code, json.loads(out[0])


async def test_add_list_revoke_against_a_node(
    users_file: Path,
    capsys: pytest.CaptureFixture[str],
    start_node: StartNode,
    http: aiohttp.ClientSession,
) -> None:
    f = str(users_file)
    code, added = await run_json(
        capsys, "apikey", "add", "console", "--scopes", "read,admin", "--users-file", f, "--json"
    )
    assert code == 0 and set(added) == {"name", "key", "scopes"}
    assert added["name"] == "console" and added["scopes"] == ["read", "admin"]
    assert added["key"] not in users_file.read_text()

    code, dup = await run_json(
        capsys, "apikey", "add", "console", "--scopes", "read", "--users-file", f, "--json"
    )
    assert (code, dup["error"]) == (1, "apikey_exists")
    code, bad = await run_json(
        capsys, "apikey", "add", "x", "--scopes", "root", "--users-file", f, "--json"
    )
    assert (code, bad["error"]) == (1, "invalid_apikey_data")

    code, listed = await run_json(capsys, "apikey", "list", "--users-file", f, "--json")
    assert code == 0
    (entry,) = listed["apikeys"]
    assert set(entry) == {"name", "scopes", "created"} and entry["name"] == "console"

    node = await start_node()
    assert node.http_url is not None
    api = Api(http, node.http_url, {"console": added["key"]})
    assert (await api.call("GET", "/api/queues", "console"))[0] == 200
    assert (await api.call("POST", "/api/queues/q/messages", "console", json={"message": "m"}))[
        0
    ] == 403

    code, revoked = await run_json(
        capsys, "apikey", "revoke", "console", "--users-file", f, "--json"
    )
    assert (code, revoked) == (0, {"name": "console", "revoked": True})
    async with asyncio.timeout(5):
        while (await api.call("GET", "/api/queues", "console"))[0] != 401:
            await asyncio.sleep(0.2)
    code, missing = await run_json(
        capsys, "apikey", "revoke", "console", "--users-file", f, "--json"
    )
    assert (code, missing["error"]) == (1, "apikey_not_found")
    code, err = await run_json(
        capsys, "apikey", "list", "--users-file", str(users_file) + ".x", "--json"
    )
    assert (code, err["error"]) == (1, "users_file_missing")


def test_text_output_and_subprocess(tmp_path: Path) -> None:
    f = str(tmp_path / "users.json")
    proc = subprocess.run(
        [sys.executable, "-m", "wsmq", "apikey", "add", "ci", "--scopes", "publish",
         "--users-file", f],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "shown only now" in proc.stdout and "wsmq_" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "wsmq", "apikey", "list", "--users-file", f],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("ci  scopes=publish")
    assert "wsmq_" not in proc.stdout

"""Server building blocks without a network: origin check, readiness checks, hook users, CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from wsmq.cli import main
from wsmq.gateway import health, serve
from wsmq.gateway.app import HookUser, _as_user
from wsmq.gateway.health import HealthChecks
from wsmq.gateway.origin import origin_allowed
from wsmq.settings import SettingsError


def _request(origin: str | None, host: str = "mq.example.com:8080") -> Any:
    headers = {"Host": host}
    if origin is not None:
        headers["Origin"] = origin
    return make_mocked_request("GET", "/", headers=headers)


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), True),  # not a browser
        ("http://mq.example.com:8080", (), False),  # a DNS name in Host is not believed alone
        ("http://127.0.0.1:8080", (), False),  # another host than Host's
        ("https://evil.example", (), False),
        ("https://app.example", ("https://app.example",), True),
        ("https://APP.example/", ("https://app.example",), True),
        ("https://app.example.evil", ("https://app.example",), False),
        ("null", ("https://app.example",), False),
        ("https://anything", ("*",), True),
        ("https://app.example:443", ("https://app.example",), True),  # default port
        ("http://app.example", ("https://app.example",), False),  # scheme
        ("https://app.example:8443", ("https://app.example",), False),  # port
        ("https://app.example:bad", ("https://app.example",), False),
    ],
)
def test_origin_allowed(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(_request(origin), allowed) is ok


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://localhost:8080", "localhost:8080", True),
        ("http://localhost", "localhost:80", True),
        ("https://localhost:8080", "localhost:8080", False),  # scheme
        ("http://localhost:8081", "localhost:8080", False),  # port
        ("http://evil.example", "evil.example", False),  # DNS rebinding
    ],
)
def test_same_origin_believes_only_ip_or_localhost_hosts(origin: str, host: str, ok: bool) -> None:
    assert origin_allowed(_request(origin, host), ()) is ok


async def test_readiness_checks_report_each_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.05)
    checks = HealthChecks()

    async def ok() -> bool:
        return True

    async def down() -> bool:
        raise ConnectionError("refused")

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    checks.add("redis", ok)
    assert await checks.run() == (True, {"redis": "ok"})
    checks.add("users", down)
    checks.add("slow", hangs)
    ready, report = await checks.run()
    assert not ready
    assert report == {"redis": "ok", "users": "error: ConnectionError", "slow": "timeout"}
    checks = HealthChecks()
    checks.add("redis", ok)
    checks.shutting_down = True
    assert await checks.run() == (False, {"redis": "ok", "shutdown": "shutting down"})


def test_hook_users() -> None:
    assert _as_user("u1") == HookUser("u1")
    assert _as_user({"user_id": "u2", "queues": ["a"]}) == HookUser("u2", ("a",), (), None)

    class Partial:
        user_id = "u3"

    assert _as_user(Partial()) == HookUser("u3")


async def test_serve_refuses_incomplete_auth_settings(redis_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret"):
        await serve(redis_url=redis_url, users_file=str(tmp_path / "u.json"), port=0)
    with pytest.raises(ValueError, match="user store"):
        await serve(redis_url=redis_url, secret="s" * 40, port=0)
    with pytest.raises(SettingsError):
        await serve(redis_url=redis_url, secret="s" * 40, port=0, no_such_setting=1)


def test_cli_serve_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["serve", "--json", "--users-file", str(tmp_path / "u.json")]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "usage" and "--secret" in out["message"]
    assert main(["serve", "--json", "--secret", "s" * 40]) == 2
    assert "user store" in json.loads(capsys.readouterr().out)["message"]
    assert main(["serve", "--json", "--port", "nope"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "invalid_setting"


async def test_port_in_use_fails_cleanly(redis_url: str, tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {
        "redis_url": redis_url,
        "secret": "s" * 40,
        "users_file": str(tmp_path / "u.json"),
        "port": 0,
    }
    first = await serve(**kwargs)
    try:
        tasks_before = len(asyncio.all_tasks())
        with pytest.raises(OSError):
            await serve(**{**kwargs, "port": first.port})
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) <= tasks_before  # nothing left running
    finally:
        await first.close()

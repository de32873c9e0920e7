"""``wsmq user add|list|disable|enable`` and ``wsmq token``: in-process and one real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from wsmq.auth import AuthConfig, Authenticator, FileUserStore, verify_jwt
from wsmq.cli import main

from .conftest import SECRET


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WSMQ_SECRET", "WSMQ_USERS_FILE", "WSMQ_MONGO_URL", "WSMQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WSMQ_SCRYPT_N", "16")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(list(argv))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # --json prints exactly one object
    return code, json.loads(out[0])


def test_user_add_list_disable_enable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = str(tmp_path / "users.json")
    code, added = run_json(
        capsys, "user", "add", "alice", "--queues", "a,b", "--publish", "c",
        "--password", "pw", "--users-file", users, "--json",
    )  # fmt: skip
    assert code == 0 and set(added) == {"id", "userName", "accessToken"}
    assert added["userName"] == "alice" and len(added["id"]) == 24

    # The printed pair works against the same file.
    cfg = AuthConfig(secret=SECRET)
    auth = Authenticator(cfg, FileUserStore(users))
    token = auth.issue_jwt(added["id"])[0]
    user = asyncio.run(auth.verify(token, added["accessToken"]))
    assert (user.queues, user.publish) == (("a", "b"), ("c",))

    code, dup = run_json(
        capsys, "user", "add", "alice", "--password", "x", "--users-file", users, "--json"
    )
    assert (code, dup["error"]) == (1, "user_exists")

    code, listed = run_json(capsys, "user", "list", "--users-file", users, "--json")
    assert code == 0
    assert listed == {
        "users": [
            {"id": added["id"], "userName": "alice", "queues": ["a", "b"], "publish": ["c"],
             "disabled": False}
        ]
    }  # fmt: skip
    assert "accessToken" not in json.dumps(listed) and "Hash" not in json.dumps(listed)

    code, disabled = run_json(capsys, "user", "disable", "alice", "--users-file", users, "--json")
    assert code == 0 and disabled["disabled"] is True
    with pytest.raises(Exception, match="disabled"):
        asyncio.run(auth.verify(token, added["accessToken"]))
    code, enabled = run_json(capsys, "user", "enable", "alice", "--users-file", users, "--json")
    assert code == 0 and enabled["disabled"] is False

    code, missing = run_json(capsys, "user", "disable", "zed", "--users-file", users, "--json")
    assert (code, missing["error"]) == (1, "user_not_found")


def test_generated_password_is_shown_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSMQ_USERS_FILE", str(tmp_path / "u.json"))  # flags default from env
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    code, added = run_json(capsys, "user", "add", "bob", "--json")
    assert code == 0 and len(added["password"]) >= 16
    store = FileUserStore(tmp_path / "u.json")
    issued = asyncio.run(
        Authenticator(AuthConfig(secret=SECRET), store).login("bob", added["password"])
    )
    assert issued.access_token


def test_user_commands_need_a_store(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_json(capsys, "user", "list", "--json")
    assert code == 2 and err["error"] == "usage"


def test_bad_queue_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_json(
        capsys, "user", "add", "x", "--queues", "no spaces", "--password", "p",
        "--users-file", str(tmp_path / "u.json"), "--json",
    )  # fmt: skip
    assert (code, err["error"]) == (1, "invalid_user_data")


def test_disable_publishes_revocation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    users = str(tmp_path / "users.json")
    run_json(capsys, "user", "add", "alice", "--password", "pw", "--users-file", users, "--json")
    sub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call, unused-ignore]
    sub.subscribe("rsmq:wsmq:revoke")
    try:
        code, out = run_json(
            capsys, "user", "disable", "alice", "--users-file", users,
            "--redis-url", redis_url, "--json",
        )  # fmt: skip
        assert code == 0 and out["revokedOn"] == 1
        deadline = time.monotonic() + 1
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = sub.get_message(timeout=0.2)  # the subscribe confirmation comes first
        assert msg is not None and json.loads(msg["data"]) == {"userId": out["id"]}
    finally:
        sub.close()


def test_passwd_revokes_and_publishes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    users = str(tmp_path / "users.json")
    _, added = run_json(
        capsys, "user", "add", "dan", "--password", "old", "--users-file", users, "--json"
    )
    code, out = run_json(
        capsys, "user", "passwd", "dan", "--password", "new", "--users-file", users,
        "--redis-url", redis_url, "--json",
    )  # fmt: skip
    assert code == 0 and out["id"] == added["id"] and out["revokedOn"] == 0  # nobody listening
    auth = Authenticator(AuthConfig(secret=SECRET), FileUserStore(users))
    with pytest.raises(Exception, match="invalid credentials"):
        asyncio.run(auth.verify(auth.issue_jwt(added["id"])[0], added["accessToken"]))
    assert asyncio.run(auth.login("dan", "new")).access_token


def test_token(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = run_json(capsys, "token", "abc123", "--secret", SECRET, "--ttl", "60", "--json")
    assert code == 0 and out["expiresIn"] == 60
    assert verify_jwt(out["token"], AuthConfig(secret=SECRET)).user_id == "abc123"
    monkeypatch.setenv("WSMQ_SECRET", SECRET)
    code, out = run_json(capsys, "token", "abc123", "--json")
    assert code == 0 and out["expiresIn"] == 900
    monkeypatch.delenv("WSMQ_SECRET")
    code, err = run_json(capsys, "token", "abc123", "--json")
    assert (code, err["error"]) == (2, "usage")
    code, err = run_json(capsys, "token", "bad id", "--secret", SECRET, "--json")
    assert (code, err["error"]) == (1, "invalid_value")


def test_user_add_subprocess(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    env = {**os.environ, "WSMQ_SCRYPT_N": "16"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wsmq"), "user", "add", "carol", "--password", "pw",
         "--queues", "q1", "--users-file", str(users), "--json"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert set(body) == {"id", "userName", "accessToken"} and body["userName"] == "carol"
    stored = json.loads(users.read_text())["users"][0]
    assert stored["_id"] == body["id"] and body["accessToken"] not in users.read_text()


def test_reserved_queue_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_json(
        capsys, "user", "add", "x", "--publish", "QUEUES", "--password", "p",
        "--users-file", str(tmp_path / "u.json"), "--json",
    )  # fmt: skip
    assert (code, err["error"]) == (1, "invalid_user_data")
    assert "QUEUES" in err["message"]

"""``wsmq send``, ``wsmq receive`` and ``wsmq queue ...``: output shapes, exit codes, errors."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from wsmq.cli import main
from wsmq.testing.redisproc import RedisProcess, free_port

Cli = Callable[..., tuple[int, Any]]


@pytest.fixture
def cli(redis_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``wsmq ARGS --redis-url <private> --json`` in-process; return (exit code, JSON)."""

    def run(*args: str, url: str | None = redis_url) -> tuple[int, Any]:
        argv = [*args, "--json"] + (["--redis-url", url] if url else [])
        code = main(argv)
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert len(lines) == 1, f"--json must print exactly one line, got {out!r}"
        return code, json.loads(lines[0])

    return run


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def test_send_then_receive_json_shapes(cli: Cli) -> None:
    assert cli("queue", "create", "jobs")[0] == 0
    code, sent = cli("send", "jobs", "héllo 😀")
    assert code == 0 and set(sent) == {"id"} and len(sent["id"]) == 32
    code, got = cli("receive", "jobs", "--vt", "60")
    assert code == 0 and set(got) == {"messages"}
    [msg] = got["messages"]
    assert set(msg) == {"id", "message", "rc", "fr", "sent"}
    assert msg["id"] == sent["id"] and msg["message"] == "héllo 😀" and msg["rc"] == 1
    assert isinstance(msg["fr"], int) and msg["sent"] == pytest.approx(msg["fr"], abs=5000)
    assert cli("receive", "jobs") == (0, {"messages": []})  # hidden for 60 s


def test_queue_create_stats_list_delete(cli: Cli, sync_redis: redis.Redis) -> None:
    code, created = cli("queue", "create", "q1", "--vt", "45", "--delay", "2", "--maxsize", "2048")
    assert code == 0 and created["queue"] == "q1" and created["created"] is True
    assert (created["attributes"]["vt"], created["attributes"]["maxsize"]) == (45, 2048)
    # RSMQ's key layout, readable by the npm package.
    assert sync_redis.hmget("rsmq:q1:Q", ["vt", "delay", "maxsize"]) == ["45", "2", "2048"]
    assert cli("queue", "create", "q0")[0] == 0

    code, stats = cli("queue", "stats", "q1")
    assert code == 0 and stats["queue"] == "q1"
    for key in ("vt", "delay", "maxsize", "totalrecv", "totalsent", "created", "modified"):
        assert key in stats
    assert (stats["vt"], stats["delay"], stats["msgs"], stats["hiddenmsgs"]) == (45, 2, 0, 0)

    assert cli("queue", "list") == (0, {"queues": ["q0", "q1"]})
    assert cli("queue", "delete", "q1", "--yes") == (0, {"queue": "q1", "deleted": True})
    assert cli("queue", "list") == (0, {"queues": ["q0"]})
    code, err = cli("queue", "stats", "q1")
    assert (code, err["error"]) == (1, "queueNotFound")
    assert err["message"] == "Queue 'q1' not found: create it with `wsmq queue create q1`"
    assert cli("queue", "delete", "q1", "--yes")[1]["error"] == "queueNotFound"


def test_queue_create_errors_use_rsmq_names(cli: Cli) -> None:
    assert cli("queue", "create", "dup")[0] == 0
    assert cli("queue", "create", "dup") == (
        1,
        {"error": "queueExists", "message": "Queue 'dup' exists"},
    )
    code, err = cli("queue", "create", "bad name")
    assert (code, err["error"]) == (1, "invalidFormat")
    assert err["message"].startswith("Invalid queue name 'bad name': a queue name is 1-160 ")
    assert cli("queue", "create", "big", "--vt", "10000000") == (
        1,
        {"error": "invalidValue", "message": "vt must be between 0 and 9999999 (queue 'big')"},
    )
    assert cli("queue", "create", "small", "--maxsize", "900")[1]["error"] == "invalidValue"
    assert cli("queue", "list") == (0, {"queues": ["dup"]})


def test_queue_set_changes_attributes(cli: Cli) -> None:
    cli("queue", "create", "s")
    code, attrs = cli("queue", "set", "s", "--vt", "99", "--maxsize", "-1")
    assert code == 0 and (attrs["vt"], attrs["maxsize"], attrs["delay"]) == (99, -1, 0)
    assert cli("queue", "set", "s")[:1] == (2,)  # nothing to set: a usage error
    assert cli("queue", "set", "nope", "--vt", "1")[1]["error"] == "queueNotFound"


def test_dead_letter_and_ttl_options(cli: Cli) -> None:
    cli("queue", "create", "dlq")
    code, created = cli(
        "queue", "create", "work", "--max-receive-count", "1", "--dead-letter-queue", "dlq",
        "--message-ttl", "3600",
    )  # fmt: skip
    assert code == 0
    _, stats = cli("queue", "stats", "work")
    assert stats["vt"] == created["attributes"]["vt"] == 30
    assert (stats["max_receive_count"], stats["dead_letter_queue"], stats["message_ttl"]) == (
        1,
        "dlq",
        3600,
    )
    # The first receive delivers; the next one moves the message to the dead-letter queue.
    cli("send", "work", "poison")
    assert len(cli("receive", "work", "--vt", "0")[1]["messages"]) == 1
    assert cli("receive", "work")[1]["messages"] == []
    [dead] = cli("receive", "dlq")[1]["messages"]
    assert dead["message"] == "poison"
    code, err = cli("queue", "create", "w2", "--max-receive-count", "1", "--dead-letter-queue", "x")
    assert code == 1 and err["error"] == "queueNotFound"
    # Switched off again with 0 / "".
    code, attrs = cli(
        "queue", "set", "work", "--max-receive-count", "0", "--message-ttl", "0",
        "--dead-letter-queue", "",
    )  # fmt: skip
    assert code == 0
    assert (attrs["max_receive_count"], attrs["dead_letter_queue"], attrs["message_ttl"]) == (
        None,
        None,
        None,
    )


def test_receive_batch_and_delete(cli: Cli) -> None:
    cli("queue", "create", "b")
    ids = [cli("send", "b", f"m{i}")[1]["id"] for i in range(5)]
    code, got = cli("receive", "b", "--count", "3", "--delete")
    assert code == 0 and got["deleted"] == 3
    assert [m["id"] for m in got["messages"]] == ids[:3]
    assert [m["message"] for m in got["messages"]] == ["m0", "m1", "m2"]
    _, stats = cli("queue", "stats", "b")
    assert (stats["msgs"], stats["totalrecv"], stats["totalsent"]) == (2, 3, 5)
    _, rest = cli("receive", "b", "--count", "10", "--vt", "0")
    assert [m["id"] for m in rest["messages"]] == ids[3:]
    assert cli("receive", "b", "--count", "1001")[1]["error"] == "invalidValue"


def test_send_delay_and_create(cli: Cli) -> None:
    code, err = cli("send", "auto", "x")
    assert (code, err["error"]) == (1, "queueNotFound")
    assert err["message"].endswith("`wsmq queue create auto` or pass --create")
    assert cli("queue", "list")[1] == {"queues": []}  # no silent creation
    code, first = cli("send", "auto", "x", "--create", "--delay", "100")
    assert code == 0 and len(first["id"]) == 32
    assert cli("send", "auto", "y", "--create")[0] == 0  # exists now: fine
    _, stats = cli("queue", "stats", "auto")
    assert (stats["msgs"], stats["hiddenmsgs"], stats["vt"]) == (2, 1, 30)
    [visible] = cli("receive", "auto", "--count", "5")[1]["messages"]
    assert visible["message"] == "y"


def test_send_errors(cli: Cli) -> None:
    cli("queue", "create", "small", "--maxsize", "1024")
    too_long = "Message too long for queue 'small' (longer than its maxsize)"
    assert cli("send", "small", "😀" * 513) == (1, {"error": "messageTooLong", "message": too_long})
    assert cli("send", "small", "é" * 1024)[0] == 0  # 1024 UTF-16 units fit
    assert cli("send", "small", "x", "--delay", "10000000")[1]["error"] == "invalidValue"
    assert cli("send", "a:b", "x")[1]["error"] == "invalidFormat"
    # Lone surrogate = argv that was not UTF-8.
    assert cli("send", "small", "bad \udcff") == (
        2,
        {"error": "invalid_input", "message": "MESSAGE is not valid UTF-8"},
    )


def test_send_reads_stdin_byte_for_byte(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("queue", "create", "in")
    body = "multi\nline ✓ 😀\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body.encode())))
    assert cli("send", "in", "-")[0] == 0
    assert cli("receive", "in")[1]["messages"][0]["message"] == body
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe bad")))
    code, err = cli("send", "in", "-")
    assert code == 2 and err["error"] == "invalid_input"
    assert cli("queue", "stats", "in")[1]["totalsent"] == 1


def test_delete_needs_yes_when_not_interactive(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("queue", "create", "keep")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, err = cli("queue", "delete", "keep")
    assert code == 2 and err["error"] == "confirmation_required"
    assert cli("queue", "list")[1] == {"queues": ["keep"]}


def test_env_defaults_for_url_and_namespace(
    redis_url: str, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    monkeypatch.setenv("WSMQ_REDIS_URL", redis_url)
    monkeypatch.setenv("WSMQ_NS", "other")
    assert cli("queue", "create", "envq", url=None)[0] == 0
    assert cli("send", "envq", "hi", url=None)[0] == 0
    assert sync_redis.smembers("other:QUEUES") == {"envq"}
    assert sync_redis.exists("rsmq:QUEUES") == 0
    assert cli("queue", "list", "--ns", "rsmq", url=None) == (0, {"queues": []})


def test_redis_unreachable_fails_fast(cli: Cli) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"  # nothing listens there
    for args in (("send", "q", "x"), ("receive", "q"), ("queue", "list")):
        start = time.monotonic()
        code, err = cli(*args, "--timeout", "5", url=url)
        # Refused at once: reported as such, well before the --timeout budget.
        assert code == 1 and err["error"] == "redis_unavailable"
        assert err["message"].startswith("cannot reach Redis at redis://:***@127.0.0.1:")
        assert time.monotonic() - start < 5
        assert "s3cret" not in err["message"] and "127.0.0.1" in err["message"]


def test_redis_not_answering_is_bounded(cli: Cli) -> None:
    # Accepts TCP connections (kernel backlog) but never answers: only --timeout ends it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        start = time.monotonic()
        code, err = cli("queue", "list", "--timeout", "0.5", url=url)
    assert code == 1 and err["error"] == "redis_unavailable"
    assert "no answer from Redis" in err["message"]
    assert time.monotonic() - start < 5


def test_bad_url_is_a_usage_error(cli: Cli) -> None:
    code, err = cli("queue", "list", url="http://example.invalid/")
    assert code == 2 and err["error"] == "invalid_url"


@pytest.mark.parametrize(
    "argv",
    [
        ["send", "q"],
        ["send", "q", "x", "--delay", "soon"],
        ["send", "q", "x", "--delay", "-1"],
        ["receive", "q", "--count", "0"],
        ["receive", "q", "--vt", "1.5"],
        ["queue"],
        ["queue", "create"],
        ["queue", "create", "q", "--bogus"],
        ["queue", "list", "--timeout", "0"],
    ],
)
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"wsmq {argv[0]}" in err.splitlines()[-1] and ": error: " in err


def test_human_output(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["queue", "create", "h", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out == "created queue h\n"
    assert main(["send", "h", "hello", "--redis-url", redis_url]) == 0
    msg_id = capsys.readouterr().out.strip()
    assert len(msg_id) == 32
    assert main(["receive", "h", "--redis-url", redis_url]) == 0
    assert capsys.readouterr().out == f"{msg_id} rc=1 hello\n"
    assert main(["queue", "stats", "nope", "--redis-url", redis_url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "wsmq queue stats: error: Queue 'nope' not found: create it with `wsmq queue create nope`\n"
    )


def test_real_subprocess_send_and_receive(redis_url: str) -> None:
    exe = Path(sys.executable).parent / "wsmq"  # the console script of the running venv
    if not exe.exists():
        pytest.skip("console script not installed next to the running Python")

    def wsmq(*args: str, stdin: str | None = None) -> tuple[int, Any]:
        proc = subprocess.run(
            [str(exe), *args, "--redis-url", redis_url, "--json"],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.returncode, json.loads(proc.stdout)

    code, sent = wsmq("send", "sub", "from a shell ✓", "--create")
    assert code == 0 and len(sent["id"]) == 32
    code, got = wsmq("receive", "sub", "--delete")
    assert code == 0 and got["deleted"] == 1
    assert [(m["id"], m["message"]) for m in got["messages"]] == [(sent["id"], "from a shell ✓")]
    assert wsmq("receive", "sub") == (0, {"messages": []})
    code, err = wsmq("send", "missing", "x")
    assert (code, err["error"]) == (1, "queueNotFound") and "'missing'" in err["message"]


def test_acl_user_password_and_errors(redis_factory: Callable[..., RedisProcess], cli: Cli) -> None:
    server = redis_factory()
    # Passwords are set once it runs (RedisProcess's readiness PING is unauthenticated).
    with redis.Redis.from_url(server.url) as admin:
        admin.acl_setuser(
            "reader", enabled=True, passwords=["+readerpw"], keys=["*"], channels=["*"],
            commands=["+@read", "+@connection"],
        )  # fmt: skip
        admin.config_set("requirepass", "adminpw")
    base = f"127.0.0.1:{server.port}/0"
    assert cli("send", "acl", "x", "--create", url=f"redis://:adminpw@{base}")[0] == 0
    # Wrong password: refused, and the password never appears in the message.
    code, err = cli("queue", "list", url=f"redis://:wrongpw@{base}")
    assert code == 1 and err["error"] == "redis_unavailable" and "wrongpw" not in err["message"]
    # An ACL user may read but not run scripts: Redis's error, passed on as redis_error.
    assert cli("queue", "list", url=f"redis://reader:readerpw@{base}") == (0, {"queues": ["acl"]})
    code, err = cli("send", "acl", "y", url=f"redis://reader:readerpw@{base}")
    assert code == 1 and err["error"] == "redis_error" and "no permissions" in err["message"]
    assert "readerpw" not in err["message"]


def test_reserved_queue_names_are_refused(cli: Cli, sync_redis: redis.Redis) -> None:
    for args in (("queue", "create", "QUEUES"), ("send", "QUEUES", "x"), ("receive", "QUEUES")):
        code, err = cli(*args)
        assert (code, err["error"]) == (1, "invalidFormat")
        assert err["message"].startswith("Invalid queue name 'QUEUES': QUEUES is reserved")
    assert sync_redis.type("rsmq:QUEUES") == "none"  # nothing was created

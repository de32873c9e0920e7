"""Every command fails the same way and names what the error is about; every --help explains.

The one format: ``wsmq <command>: error: <message>`` as the last line on stderr (a usage error
prints the usage line first), or with ``--json`` one ``{"error", "message"}`` object on stdout;
exit code 2 for usage errors, 1 when the operation failed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsmq.cli import build_parser, main
from wsmq.protocol.names import QNAME_RULE

SECRET = "s" * 48


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WSMQ_SECRET", "WSMQ_USERS_FILE", "WSMQ_MONGO_URL", "WSMQ_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WSMQ_SCRYPT_N", "16")


def fail(
    capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 1
) -> tuple[str, dict[str, str]]:
    """Run ``argv`` twice, as text and with --json; return (the error line, the JSON error)."""
    assert main(argv) == code
    text = capsys.readouterr()
    assert text.out == ""
    last = text.err.splitlines()[-1]
    assert main([*argv, "--json"]) == code
    as_json = capsys.readouterr()
    [line] = as_json.out.splitlines()
    error = json.loads(line)
    assert set(error) == {"error", "message"}
    assert last.split(": error: ", 1)[1] == error["message"]  # same message both ways
    return last, error


@pytest.mark.parametrize(
    "command", [["send", "nope", "hi"], ["receive", "nope"], ["queue", "stats", "nope"]]
)
def test_queue_not_found_names_the_queue_and_how_to_create_it(
    command: list[str], redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prog = "wsmq " + " ".join(command[: 2 if command[0] == "queue" else 1])
    line, error = fail(capsys, [*command, "--redis-url", redis_url])
    assert line.startswith(f"{prog}: error: Queue 'nope' not found")
    assert error["error"] == "queueNotFound"  # RSMQ's error name
    assert "`wsmq queue create nope`" in error["message"]
    assert ("--create" in error["message"]) == (command[0] == "send")


def test_invalid_queue_name_states_the_allowed_characters(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line, error = fail(capsys, ["queue", "create", "bad name!", "--redis-url", redis_url])
    assert line.startswith("wsmq queue create: error: Invalid queue name 'bad name!'")
    assert error["error"] == "invalidFormat"
    assert error["message"].endswith(f": {QNAME_RULE}")
    assert "1-160 characters of A-Z a-z 0-9 _ -" in QNAME_RULE  # the allowed characters


def test_token_refuses_an_unknown_user_when_it_sees_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = str(tmp_path / "users.json")
    assert main(["user", "add", "alice", "--password", "pw", "--users-file", users]) == 0
    capsys.readouterr()
    line, error = fail(capsys, ["token", "bob", "--secret", SECRET, "--users-file", users])
    assert line.startswith("wsmq token: error: no user named 'bob'") and users in line
    assert error["error"] == "user_not_found"
    # A known user may be named: the token is signed for its id.
    assert main(["token", "alice", "--secret", SECRET, "--users-file", users, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["expiresIn"] == 900


def test_user_commands_on_a_missing_users_file_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = str(tmp_path / "missing.json")
    for prog, argv in (
        ("wsmq user list", ["user", "list"]),
        ("wsmq user disable", ["user", "disable", "bob"]),
        ("wsmq token", ["token", "bob", "--secret", SECRET]),
    ):
        line, error = fail(capsys, [*argv, "--users-file", users])
        assert line.startswith(f"{prog}: error: ")
        assert error["error"] == "users_file_missing"
        assert f"users file {users} does not exist" in error["message"]
    assert not Path(users).exists()  # reading never creates it


def test_usage_errors_use_the_same_format(capsys: pytest.CaptureFixture[str]) -> None:
    line, error = fail(capsys, ["queue", "stats"], code=2)
    assert line == "wsmq queue stats: error: the following arguments are required: QNAME"
    assert error == {"error": "usage", "message": line.split(": error: ", 1)[1]}
    line, error = fail(capsys, ["user", "list", "--users-file", "u.json", "--bogus"], code=2)
    assert line.startswith("wsmq user list: error: unrecognized arguments: --bogus")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_port_in_use_names_host_and_port(
    busy_port: int, redis_url: str, tmp_path: Path
) -> None:
    argv = [
        sys.executable, "-m", "wsmq", "serve", "--host", "127.0.0.1", "--port", str(busy_port),
        "--redis-url", redis_url, "--users-file", str(tmp_path / "u.json"), "--create-users-file",
    ]  # fmt: skip
    env = {**os.environ, "WSMQ_SECRET": SECRET, "WSMQ_LOG_LEVEL": "warning"}
    for as_json in (False, True):
        proc = subprocess.run(
            argv + (["--json"] if as_json else []),
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr
        if as_json:
            error = json.loads(proc.stdout.splitlines()[-1])
            assert error["error"] == "port_in_use"
            message = error["message"]
        else:
            last = proc.stderr.splitlines()[-1]
            assert last.startswith("wsmq serve: error: ")
            message = last
        assert f"127.0.0.1:{busy_port}" in message and "in use" in message


def _parsers(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[argparse.ArgumentParser, str | None]]:
    """Every parser under ``parser`` with the one-line help its parent lists it with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield sub, summaries.get(name)
                yield from _parsers(sub)


def test_every_command_has_a_description_and_option_help() -> None:
    parsers = list(_parsers(build_parser()))
    assert {p.prog for p, _ in parsers} >= {
        "wsmq serve", "wsmq send", "wsmq receive", "wsmq queue create", "wsmq queue list",
        "wsmq queue stats", "wsmq queue set", "wsmq queue delete", "wsmq user", "wsmq user add",
        "wsmq user list", "wsmq user disable", "wsmq user enable", "wsmq user passwd",
        "wsmq token", "wsmq demo",
    }  # fmt: skip
    descriptions = [p.description for p, _ in parsers]
    for parser, summary in parsers:
        assert parser.description, f"{parser.prog} --help has no description"
        assert summary, f"{parser.prog} has no summary in its parent's --help"
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"
    assert len(set(descriptions)) == len(descriptions), "a description is copy-pasted"


def test_no_option_claims_an_effect_its_command_does_not_have() -> None:
    """An option's help that promises a revocation belongs only to commands that revoke."""
    for parser, _ in _parsers(build_parser()):
        description = (parser.description or "").lower()
        for action in parser._actions:
            text = (action.help or "").lower()
            if action.help != argparse.SUPPRESS and "revocation" in text:
                assert "revok" in description or "sockets" in description, (
                    f"{parser.prog} {action.option_strings}: {action.help}"
                )
    enable = {p.prog: p for p, _ in _parsers(build_parser())}["wsmq user enable"]
    assert "--redis-url" not in enable.format_help()
    # Still accepted (and ignored), so scripts that passed it keep working.
    argv = ["user", "enable", "bob", "--redis-url", "redis://127.0.0.1:1/0", "--users-file", "f"]
    assert build_parser().parse_args(argv).redis_url == "redis://127.0.0.1:1/0"

"""``wsmq group (add|remove|list|members|delete|copy)``: JSON shapes, exit codes, errors; and a
group fed by ``wsmq send`` (single server and cluster)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from wsmq.cli import main

Cli = Callable[..., tuple[int, Any]]


@pytest.fixture(params=["single", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    value: str = request.getfixturevalue(
        "redis_url" if request.param == "single" else "cluster_url"
    )
    return value


@pytest.fixture
def cli(url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``wsmq ARGS --redis-url URL --json`` in-process; return (exit code, JSON)."""

    def run(*args: str) -> tuple[int, Any]:
        code = main([*args, "--json", "--redis-url", url])
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 1, lines
        return code, json.loads(lines[0])

    return run


def test_group_commands(cli: Cli) -> None:
    for q in ("a", "b"):
        assert cli("queue", "create", q)[0] == 0
    assert cli("group", "add", "news", "a", "b") == (
        0, {"group": "news", "added": 2, "members": ["a", "b"]},
    )  # fmt: skip
    assert cli("group", "list") == (0, {"groups": ["news"]})
    assert cli("group", "members", "news") == (0, {"group": "news", "members": ["a", "b"]})

    code, sent = cli("send", "news", "hello")  # publishing to a group is sending to a queue
    assert code == 0
    assert cli("group", "copy") == (0, {"copies": 2})
    for q in ("a", "b"):
        code, got = cli("receive", q, "--delete")
        assert code == 0 and [(m["id"], m["message"]) for m in got["messages"]] == [
            (sent["id"], "hello")
        ]
    assert cli("group", "copy") == (0, {"copies": 0})

    assert cli("group", "remove", "news", "a") == (
        0, {"group": "news", "removed": 1, "members": ["b"]},
    )  # fmt: skip
    assert cli("group", "delete", "news", "--yes") == (0, {"group": "news", "deleted": True})
    assert cli("group", "list") == (0, {"groups": []})


def test_group_errors(cli: Cli) -> None:
    assert cli("queue", "create", "plain")[0] == 0
    assert cli("group", "add", "g", "ghost") == (
        1, {"error": "queueNotFound", "message": "Queue 'ghost' not found"},
    )  # fmt: skip
    assert cli("group", "members", "plain") == (
        1, {"error": "notAGroup", "message": "Queue 'plain' is not a group"},
    )  # fmt: skip
    assert cli("group", "add", "plain")[1]["error"] == "notAGroup"
    assert cli("group", "add", "g", "plain")[0] == 0
    code, err = cli("group", "add", "g2", "g")
    assert (code, err["error"]) == (1, "invalidValue") and "member of a group" in err["message"]
    assert cli("group", "members", "nope")[1]["error"] == "queueNotFound"
    code, err = cli("group", "delete", "g")
    assert (code, err["error"]) == (2, "confirmation_required")
    code, err = cli("group", "add", "bad name")
    assert (code, err["error"]) == (1, "invalidFormat")

"""Settings: precedence of flags > env > TOML > defaults, typing, errors, generated docs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from wsmq.cli import build_parser
from wsmq.cli.serve_cmd import settings_from_args
from wsmq.settings import Settings, SettingsError, render_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_secure() -> None:
    s = Settings()
    assert s.max_frame_size == 65536
    assert s.compress is False
    assert s.allow_query_token is False
    assert s.allowed_origins == ()
    assert s.auth_deadline == 5.0
    assert s.create_queues is True


def test_precedence_flags_env_toml_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "wsmq.toml"
    toml.write_text('port = 7000\nns = "fromtoml"\nwindow = 7\nheartbeat = 3.5\n')
    env = {"WSMQ_PORT": "7100", "WSMQ_NS": "fromenv", "UNRELATED": "x"}
    s = Settings.from_sources({"port": "7200", "ns": None}, env=env, toml_path=toml)
    assert s.port == 7200  # flag beats env and file
    assert s.ns == "fromenv"  # env beats file (flag None = not given)
    assert s.window == 7  # file beats default
    assert s.heartbeat == 3.5
    assert s.batch_size == Settings().batch_size  # default


def test_toml_wsmq_table_and_types(tmp_path: Path) -> None:
    toml = tmp_path / "wsmq.toml"
    toml.write_text(
        '[wsmq]\nallowed-origins = ["https://a.example", "https://b.example"]\ncompress = true\n'
    )
    s = Settings.from_sources({}, env={}, toml_path=toml)
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert s.compress is True


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"WSMQ_COMPRESS": "yes"}, "compress", True),
        ({"WSMQ_COMPRESS": "0"}, "compress", False),
        (
            {"WSMQ_ALLOWED_ORIGINS": "https://a, https://b"},
            "allowed_origins",
            ("https://a", "https://b"),
        ),
        ({"WSMQ_RATE_LIMIT": "12.5"}, "rate_limit", 12.5),
        ({"WSMQ_SECRET": ""}, "secret", None),
    ],
)
def test_env_strings_are_typed(env: dict[str, str], field: str, expected: object) -> None:
    assert getattr(Settings.from_sources({}, env=env), field) == expected


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"port": "eighty"}, "port"),
        ({"port": 70000}, "port"),
        ({"compress": "maybe"}, "compress"),
        ({"leeway": 30}, "leeway"),
        ({"window": 0}, "window"),
        ({"log_level": "loud"}, "log_level"),
        ({"path": "ws"}, "path"),
    ],
)
def test_bad_values_name_the_setting(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_sources(kwargs, env={})
    assert info.value.name == name


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "wsmq.toml"
    toml.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="prot"):
        Settings.from_sources({}, env={}, toml_path=toml)


def test_redacted_masks_secrets() -> None:
    s = Settings(secret="s3cr3t" * 6, redis_url="redis://u:pw@h:1/0")
    red = s.redacted()
    assert red["secret"] == "***"
    assert "pw" not in red["redis_url"]


def test_cli_has_a_flag_for_every_setting(tmp_path: Path) -> None:
    parser = build_parser()
    toml = tmp_path / "c.toml"
    toml.write_text("window = 9\n")
    args = parser.parse_args(
        ["serve", "--port", "0", "--no-compress", "--allowed-origins", "https://x",
         "--config", str(toml)]
    )  # fmt: skip
    s = settings_from_args(args, env={"WSMQ_NS": "envns"})
    assert (s.port, s.compress, s.allowed_origins, s.window, s.ns) == (
        0, False, ("https://x",), 9, "envns"
    )  # fmt: skip
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve_help = sub_action.choices["serve"].format_help()
    for name in Settings.field_names():
        assert "--" + name.replace("_", "-") in serve_help


def test_configuration_doc_is_up_to_date() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert text == render_markdown(), "run: python -m wsmq.settings docs/configuration.md"
    for name in Settings.field_names():
        assert f"`{name}`" in text

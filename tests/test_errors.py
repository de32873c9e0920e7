"""Every exception class wsmq defines belongs to the one error tree rooted at WsmqError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest

import wsmq
from wsmq.errors import ConfigError, WsmqError


def _exception_classes() -> Iterator[type[BaseException]]:
    """Public exception classes defined in wsmq's modules (``__main__`` modules run on import)."""
    for info in pkgutil.walk_packages(wsmq.__path__, "wsmq."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
                and not name.startswith("_")  # private control-flow signals never leave
            ):
                yield obj


CLASSES = sorted(set(_exception_classes()), key=lambda cls: f"{cls.__module__}.{cls.__name__}")


def test_the_walk_finds_the_families() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"WsmqError", "QueueNotFound", "AuthError", "ProtocolError", "CliError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_exception_is_a_wsmq_error_with_its_own_code(cls: type[BaseException]) -> None:
    assert issubclass(cls, WsmqError)
    assert isinstance(cls.code, str) and cls.code
    assert cls is WsmqError or cls.code != WsmqError.code


def test_builtin_bases_are_kept() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from wsmq.auth.errors import InvalidUserData
    from wsmq.connections import PoolExhaustedError
    from wsmq.engine.delivery import EngineStopped
    from wsmq.engine.settle import DeleteNotApplied
    from wsmq.redis_url import RedisUrlError
    from wsmq.settings import SettingsError

    assert SettingsError is ConfigError
    for cls, builtin in [
        (ConfigError, ValueError),
        (RedisUrlError, ValueError),
        (InvalidUserData, ValueError),
        (EngineStopped, RuntimeError),
        (DeleteNotApplied, ConnectionError),
        (PoolExhaustedError, RedisConnectionError),
    ]:
        assert issubclass(cls, builtin), cls


def test_instances_carry_code_and_message() -> None:
    from wsmq.auth.errors import AuthError
    from wsmq.cli.common import CliError
    from wsmq.protocol.wire import ProtocolError
    from wsmq.queue.errors import DeadLetterQueueNotFound, MissingParameter, QueueNotFound
    from wsmq.redis_url import RedisUrlError

    cases: list[tuple[WsmqError, str, str]] = [
        (QueueNotFound(), "queueNotFound", "Queue not found"),
        (DeadLetterQueueNotFound(), "queueNotFound", "Dead-letter queue not found"),
        (MissingParameter("qname"), "missingParameter", "No qname supplied"),
        (AuthError("expired"), "expired", "the token has expired"),
        (ProtocolError("invalid_frame", "bad"), "invalid_frame", "bad"),
        (CliError("usage", "no"), "usage", "no"),
        (RedisUrlError("no host"), "invalid_redis_url", "no host"),
        (ConfigError("port", "out of range"), "invalid_setting", "setting 'port': out of range"),
    ]
    for exc, code, message in cases:
        assert (exc.code, exc.message, str(exc)) == (code, message, message)


def test_top_level_exports() -> None:
    for name in ("WsmqError", "ConfigError", "QueueError", "AuthError", "ProtocolError"):
        assert issubclass(getattr(wsmq, name), WsmqError)

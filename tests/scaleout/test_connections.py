"""``wsmq.connections``: pure URL parsing, client construction, and real standalone servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from wsmq.connections import (
    RedisTarget,
    RedisUrlError,
    SentinelRedis,
    WaitingConnectionPool,
    parse_redis_url,
    redis_from_url,
)
from wsmq.testing.redisproc import RedisProcess, free_port

from .conftest import TlsFiles

# --- pure parsing ---------------------------------------------------------------------------


def test_plain_url_defaults() -> None:
    target = parse_redis_url("redis://localhost")
    assert target == RedisTarget("standalone", (("localhost", 6379),))


def test_full_standalone_url() -> None:
    target = parse_redis_url("rediss://alice:s%40cr%2Fet@cache.example:6380/3?ssl_cert_reqs=none")
    assert target.kind == "standalone"
    assert target.tls is True
    assert target.hosts == (("cache.example", 6380),)
    assert (target.username, target.password, target.db) == ("alice", "s@cr/et", 3)
    assert target.options == {"ssl_cert_reqs": "none"}


@pytest.mark.parametrize(
    ("url", "username", "password"),
    [
        ("redis://:secret@h/0", None, "secret"),
        ("redis://secret@h/0", None, "secret"),  # lone token: AUTH <password>
        ("redis://bob:@h/0", "bob", ""),
        ("redis://h/0", None, None),
    ],
)
def test_credentials(url: str, username: str | None, password: str | None) -> None:
    target = parse_redis_url(url)
    assert (target.username, target.password) == (username, password)


@given(
    user=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
    password=st.text(max_size=40),
)
def test_any_percent_encoded_credentials_round_trip(user: str, password: str) -> None:
    url = f"redis://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:7000/1"
    target = parse_redis_url(url)
    assert (target.username, target.password, target.db) == (user, password, 1)


def test_ipv6_and_options() -> None:
    target = parse_redis_url(
        "redis://[::1]:7001/2?socket_timeout=2.5&ssl_check_hostname=false&max_connections=8"
    )
    assert target.hosts == (("::1", 7001),)
    assert target.options == {
        "socket_timeout": 2.5,
        "ssl_check_hostname": False,
        "max_connections": 8,
    }


def test_unix_url() -> None:
    target = parse_redis_url("unix://:pw@/run/redis/redis.sock?db=4")
    assert (target.kind, target.path, target.db, target.password) == (
        "unix",
        "/run/redis/redis.sock",
        4,
        "pw",
    )


def test_sentinel_url() -> None:
    target = parse_redis_url("redis+sentinel://u:p@s1,s2:26380,[::1]/mymaster/2")
    assert target.kind == "sentinel"
    assert target.hosts == (("s1", 26379), ("s2", 26380), ("::1", 26379))
    assert (target.service_name, target.db, target.username, target.password) == (
        "mymaster",
        2,
        "u",
        "p",
    )
    assert parse_redis_url("rediss+sentinel://s1/svc").tls is True


def test_cluster_urls() -> None:
    target = parse_redis_url("redis+cluster://n1:7000,n2:7001")
    assert target.kind == "cluster"
    assert target.hosts == (("n1", 7000), ("n2", 7001))
    flagged = parse_redis_url("rediss://n1:7000,n2", cluster=True)
    assert (flagged.kind, flagged.tls, flagged.hosts) == (
        "cluster",
        True,
        (*target.hosts[:1], ("n2", 6379)),
    )


def test_redacted_hides_password() -> None:
    text = parse_redis_url("redis+sentinel://u:topsecret@s1/mymaster").redacted()
    assert "topsecret" not in text
    assert "s1:26379" in text and "mymaster" in text


@pytest.mark.parametrize(
    ("url", "kwargs", "fragment"),
    [
        ("", {}, "non-empty"),
        ("localhost:6379", {}, "scheme://"),
        ("http://localhost", {}, "unsupported Redis URL scheme 'http'"),
        ("redis://", {}, "no host"),
        ("redis://h:99999", {}, "out of range"),
        ("redis://h:port", {}, "invalid host"),
        ("redis://h/abc", {}, "database must be a number"),
        ("redis://h/1/2", {}, "unexpected path"),
        ("redis://a,b", {}, "several hosts"),
        ("redis://h?bogus=1", {}, "unknown URL option 'bogus'"),
        ("redis://h?socket_timeout=fast", {}, "invalid value 'fast'"),
        ("redis://h?ssl_check_hostname=maybe", {}, "invalid value 'maybe'"),
        ("redis://h?ssl_cert_reqs=always", {}, "none, optional or required"),
        ("redis+sentinel://s1", {}, "needs the service name"),
        ("redis+sentinel://s1/", {}, "needs the service name"),
        ("redis+cluster://n1/1", {}, "only database 0"),
        ("redis+sentinel://s1/m", {"cluster": True}, "cannot be combined"),
        ("unix://host/path", {}, "absolute path"),
        ("unix://", {}, "no socket path"),
    ],
)
def test_bad_urls_raise_typed_errors(url: str, kwargs: dict[str, bool], fragment: str) -> None:
    with pytest.raises(RedisUrlError, match=fragment.replace("?", r"\?")):
        parse_redis_url(url, **kwargs)
    assert issubclass(RedisUrlError, ValueError)


# --- client construction (no I/O) -------------------------------------------------------------


async def test_roles_set_read_timeouts() -> None:
    command = redis_from_url("redis://127.0.0.1:1/0")
    blocking = redis_from_url("redis://127.0.0.1:1/0", role="blocking")
    try:
        assert isinstance(command, Redis) and isinstance(blocking, Redis)
        assert command.connection_pool.connection_kwargs["socket_timeout"] == 10.0
        assert blocking.connection_pool.connection_kwargs["socket_timeout"] is None
        assert command.connection_pool.connection_kwargs["socket_connect_timeout"] == 5.0
        assert command.connection_pool.connection_kwargs["retry"].get_retries() == 3
    finally:
        await command.aclose()
        await blocking.aclose()


async def test_url_options_and_kwargs_precedence() -> None:
    client = redis_from_url(
        "rediss://127.0.0.1:1/0?socket_timeout=2&ssl_cert_reqs=none&max_connections=4",
        decode_responses=True,
        retry=0,
    )
    try:
        assert isinstance(client, Redis)
        pool = client.connection_pool
        assert isinstance(pool, WaitingConnectionPool)  # bounded: waits for a free one
        assert pool.max_connections == 4
        assert issubclass(pool.connection_class, SSLConnection)
        assert pool.connection_kwargs["socket_timeout"] == 2.0
        assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
        assert pool.connection_kwargs["decode_responses"] is True
        assert pool.connection_kwargs["retry"].get_retries() == 0
    finally:
        await client.aclose()


async def test_kinds_build_the_right_clients() -> None:
    sentinel = redis_from_url("redis+sentinel://127.0.0.1:1/mymaster")
    cluster = redis_from_url("redis://127.0.0.1:1", cluster=True)
    unix = redis_from_url("unix:///tmp/nothing.sock?db=2")
    try:
        assert isinstance(sentinel, SentinelRedis)
        assert isinstance(cluster, RedisCluster)
        assert isinstance(unix, Redis)
        assert issubclass(unix.connection_pool.connection_class, UnixDomainSocketConnection)
        assert unix.connection_pool.connection_kwargs["db"] == 2
    finally:
        await sentinel.aclose()
        await cluster.aclose()
        await unix.aclose()
    with pytest.raises(ValueError, match="role"):
        redis_from_url("redis://h", role="bogus")  # type: ignore[arg-type]


# --- real standalone servers ------------------------------------------------------------------


async def test_acl_user_and_password_from_url(
    redis_factory: Callable[..., RedisProcess],
) -> None:
    proc = redis_factory()
    admin = redis.Redis(port=proc.port)
    admin.execute_command("ACL", "SETUSER", "alice", "on", ">p@ss/word", "~*", "+@all")  # type: ignore[no-untyped-call]
    admin.close()
    good = redis_from_url(f"redis://alice:{quote('p@ss/word', safe='')}@127.0.0.1:{proc.port}/0")
    bad = redis_from_url(f"redis://alice:wrong@127.0.0.1:{proc.port}/0", retry=0)
    try:
        async with asyncio.timeout(10):
            assert await good.execute_command("ACL", "WHOAMI") in (b"alice", "alice")
            with pytest.raises(redis.exceptions.AuthenticationError):
                await bad.ping()
    finally:
        await good.aclose()
        await bad.aclose()


async def test_unix_socket_with_db(
    redis_factory: Callable[..., RedisProcess], tmp_path: Path
) -> None:
    sock = tmp_path / "r.sock"
    redis_factory(extra_args=["--unixsocket", str(sock), "--unixsocketperm", "700"])
    client = redis_from_url(f"unix://{sock}?db=5", decode_responses=True)
    try:
        async with asyncio.timeout(10):
            await client.set("k", "v")
            assert "db=5" in await client.execute_command("CLIENT", "INFO")
            assert await client.get("k") == "v"
    finally:
        await client.aclose()


async def test_unreachable_server_fails_promptly() -> None:
    client = redis_from_url(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)
    started = time.monotonic()
    try:
        async with asyncio.timeout(15):
            with pytest.raises(redis.exceptions.ConnectionError):
                await client.ping()
    finally:
        await client.aclose()
    assert time.monotonic() - started < 10


async def test_tls_url_verifies_the_server(tls_redis: tuple[int, TlsFiles]) -> None:
    port, files = tls_redis
    trusted = redis_from_url(
        f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={quote(str(files.ca))}", decode_responses=True
    )
    untrusted = redis_from_url(f"rediss://127.0.0.1:{port}/0", retry=0)
    unverified = redis_from_url(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none", retry=0)
    plain = redis_from_url(f"redis://127.0.0.1:{port}/0", retry=0, connect_timeout=2)
    try:
        async with asyncio.timeout(20):
            await trusted.set("k", "over tls")
            assert await trusted.get("k") == "over tls"
            with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate"):
                await untrusted.ping()
            assert await unverified.ping() is True
            # A plain-text client on the TLS port fails instead of hanging.
            with pytest.raises(redis.exceptions.ConnectionError):
                await plain.ping()
    finally:
        for client in (trusted, untrusted, unverified, plain):
            await client.aclose()

"""Real Redis Cluster and Sentinel deployments for the scale-out tests (private loopback ports).

Session fixtures are shared by the non-destructive tests (flushed before each one); tests that
kill nodes get their own deployment from a factory, so they never disturb the others.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from wsmq.redisproc import RedisProcess, free_port
from wsmq.redisproc_cluster import RedisCluster3, SentinelSetup


def _need_binaries() -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed: cluster tests skipped")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster3]:
    """A 3-master Redis Cluster (no replicas) for the whole session."""
    _need_binaries()
    cluster = RedisCluster3(replicas=0)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster3) -> str:
    """``redis+cluster://`` URL of the session cluster, every master flushed before the test."""
    redis_cluster.wait_ok()
    for node in redis_cluster.masters():
        client = redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5)
        try:
            client.flushall()
            client.script_flush()
        finally:
            client.close()
    return redis_cluster.url


@pytest.fixture
def cluster_factory() -> Iterator[Callable[..., RedisCluster3]]:
    """Start private clusters (``replicas=1`` for failover tests); all removed after the test."""
    _need_binaries()
    started: list[RedisCluster3] = []

    def factory(**kwargs: object) -> RedisCluster3:
        cluster = RedisCluster3(**kwargs)  # type: ignore[arg-type]
        started.append(cluster)
        return cluster.start()

    try:
        yield factory
    finally:
        for cluster in started:
            cluster.cleanup()


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[SentinelSetup]:
    """1 master, 1 replica, 3 sentinels for the whole session (never killed)."""
    setup = SentinelSetup()
    try:
        yield setup.start()
    finally:
        setup.cleanup()


@pytest.fixture
def sentinel_url(sentinel_setup: SentinelSetup) -> str:
    """``redis+sentinel://`` URL of the session setup, master flushed before the test."""
    client = redis.Redis(host="127.0.0.1", port=sentinel_setup.current_master().port)
    try:
        client.flushall()
        client.script_flush()
    finally:
        client.close()
    return sentinel_setup.url


@pytest.fixture
def sentinel_factory() -> Iterator[Callable[..., SentinelSetup]]:
    """Start private Sentinel setups (for failover tests); all removed after the test."""
    started: list[SentinelSetup] = []

    def factory(**kwargs: object) -> SentinelSetup:
        setup = SentinelSetup(**kwargs)  # type: ignore[arg-type]
        started.append(setup)
        return setup.start()

    try:
        yield factory
    finally:
        for setup in started:
            setup.cleanup()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _write_tls_files(folder: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost (test use only)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsmq test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def tls_redis(redis_factory: Callable[..., RedisProcess], tmp_path: Path) -> tuple[int, TlsFiles]:
    """A private redis-server with a TLS port (plain port kept for the readiness probe)."""
    files = _write_tls_files(tmp_path)
    tls_port = free_port()
    redis_factory(
        extra_args=[
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(files.cert),
            "--tls-key-file", str(files.key),
            "--tls-ca-cert-file", str(files.ca),
            "--tls-auth-clients", "no",
        ]
    )  # fmt: skip
    return tls_port, files

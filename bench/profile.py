"""Sizes and durations of a run: ``full`` (< 15 min on 2 cores) and ``quick`` (< 60 s)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Every knob of a benchmark run, so a quick run is the same code on smaller numbers."""

    name: str
    nodes: int = 2
    # throughput: N publishers -> M queues -> nodes -> M clients (one queue per client)
    tp_publishers: int = 2
    tp_clients: int = 8
    tp_duration: float = 8.0
    tp_warmup: float = 2.0
    tp_variants: tuple[tuple[str, int], ...] = (
        ("legacy", 100),
        ("legacy", 4096),
        ("v1", 100),
        ("v1", 4096),
    )
    tp_backlog_cap: int = 150_000
    tp_prefill: int = 150_000
    tp_prefill_bytes: int = 256 * 1024 * 1024
    # latency at a fixed offered rate, and for one message at a time on an idle queue
    lat_rates: tuple[int, ...] = (1000, 5000)
    lat_clients: int = 4
    lat_duration: float = 5.0
    lat_grace: float = 3.0
    idle_samples: int = 20
    idle_budget: float = 30.0
    idle_gap: tuple[float, float] = (0.3, 1.5)
    # backlog drain: messages queued while offline, then one client (a system that cannot
    # drain them within the timeout reports its rate so far and the fraction delivered)
    drain_count: int = 100_000
    drain_timeout: float = 40.0
    drain_empty_wait: float = 1.0  # pub/sub: how long to wait for messages that cannot come
    drain_protocols: tuple[str, ...] = ("legacy", "v1")
    # idle connections on one node
    conn_count: int = 10_000
    conn_concurrency: int = 50
    # redis-benchmark
    ceiling_requests: int = 200_000
    # fan-out (bench/fanout.py): N devices of a queue, a group of N members, vs the publisher
    # sending the N copies itself; at a fixed offered rate of copies, then a flood
    fo_devices: tuple[int, ...] = (10, 100)
    fo_group_members: int = 100
    fo_rate_copies: int = 5000
    fo_duration: float = 5.0
    fo_warmup: float = 1.0
    fo_grace: float = 3.0
    fo_flood_copies: int = 20_000
    # scale (opt-in, bench/scale.py): N idle wsmq.v1 sockets on one node, then a restart storm
    scale_connections: int = 100_000
    scale_nodes: int = 2
    scale_initial_nodes: int = 1
    scale_queues: int = 1000
    scale_users: int = 100
    scale_client_procs: int = 3
    scale_idle: float = 30.0
    scale_storm_messages: int = 5000


FULL = Profile(name="full")

QUICK = Profile(
    name="quick",
    tp_publishers=1,
    tp_clients=4,
    tp_duration=1.2,
    tp_warmup=0.3,
    tp_variants=(("legacy", 100), ("v1", 100)),
    tp_prefill=15_000,
    lat_rates=(1000,),
    lat_clients=2,
    lat_duration=1.2,
    lat_grace=1.5,
    idle_samples=2,
    idle_budget=3.0,
    idle_gap=(0.05, 0.2),
    drain_count=500,
    drain_timeout=5.0,
    drain_empty_wait=0.5,
    drain_protocols=("legacy",),
    conn_count=50,
    conn_concurrency=25,
    ceiling_requests=20_000,
    fo_devices=(10,),
    fo_group_members=10,
    fo_rate_copies=1000,
    fo_duration=1.0,
    fo_warmup=0.3,
    fo_grace=1.5,
    fo_flood_copies=1000,
    scale_connections=300,
    scale_queues=30,
    scale_users=3,
    scale_idle=1.0,
    scale_storm_messages=100,
)


def tp_queues(profile: Profile) -> list[str]:
    return [f"tp{i}" for i in range(profile.tp_clients)]


def lat_queues(profile: Profile) -> list[str]:
    return [f"lat{i}" for i in range(profile.lat_clients)]


IDLE_QUEUES = ["idle0"]
DRAIN_QUEUES = ["drain0"]


def conn_queues(profile: Profile) -> list[str]:
    return [f"conn{i}" for i in range(profile.conn_count)]


def all_queues(profile: Profile) -> list[str]:
    """Every queue a run may subscribe to (wsmq's benchmark user is authorized for them)."""
    return [
        *tp_queues(profile), *lat_queues(profile), *IDLE_QUEUES, *DRAIN_QUEUES,
        *conn_queues(profile),
    ]  # fmt: skip

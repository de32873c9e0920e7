"""The GCRA counters: the pure rule, its Lua twin on a real Redis, local memory bounds, and
the per-user delay schedule."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from wsmq.auth.json_body import json_depth_exceeds
from wsmq.auth.limiter import AuthLimits
from wsmq.auth.ratelimit import GCRA_LUA, LocalCounters, Mode, gcra_step
from wsmq.auth.shared_counters import SharedCounters, counter_key


def test_take_is_a_sliding_limit() -> None:
    counters = LocalCounters()
    # 3 per 30 s: cost 10 s, capacity 30 s.
    taken = [counters.step("k", t, 10_000, 30_000, "take").retry for t in (0, 1, 2, 3)]
    assert taken == [0, 0, 0, 9_997]  # then one more every 10 s
    assert counters.step("other", 3, 10_000, 30_000, "take").retry == 0
    assert counters.step("k", 10_000, 10_000, 30_000, "take").retry == 0
    assert counters.step("k", 10_001, 10_000, 30_000, "take").retry > 0


def test_add_caps_and_peek_reads() -> None:
    assert gcra_step(None, 100, 10, 25, "add") == (10, 0, 110)
    assert gcra_step(120, 100, 10, 25, "add") == (25, 0, 125)  # capped at capacity
    assert gcra_step(125, 100, 10, 25, "peek") == (25, 0, 125)
    assert gcra_step(50, 100, 10, 25, "peek") == (0, 0, 100)  # drained


def test_local_memory_is_bounded_and_drained_keys_forgotten() -> None:
    counters = LocalCounters(max_keys=100)
    for i in range(1000):
        counters.step(f"ip{i}", 0, 1000, 5000, "take")
    assert len(counters) == 100
    counters.step("ip999", 10_000, 1000, 5000, "peek")
    assert len(counters) == 99


async def test_lua_and_python_agree(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    local = LocalCounters()
    rng = random.Random(7)
    now = 1_800_000_000_000
    modes: list[Mode] = ["take", "add", "peek"]
    try:
        for _ in range(300):
            now += rng.choice([0, 1, 500, 3000])
            key, mode = rng.choice(["a", "b"]), rng.choice(modes)
            remote = await client.eval(GCRA_LUA, 1, key, now, 1000, 5000, mode)
            mine = local.step(key, now, 1000, 5000, mode)
            assert [int(x) for x in remote] == [mine.backlog, mine.retry], (now, key, mode)
    finally:
        await client.aclose()


async def test_shared_counters_survive_script_flush(redis_url: str) -> None:
    counters = SharedCounters(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert (await counters.step("k", 0, 10, 100, "add")).backlog == 10
        await client.script_flush()
        assert (await counters.step("k", 0, 10, 100, "add")).backlog == 20
        assert counters.shared
    finally:
        await client.aclose()
        await counters.aclose()


def test_counter_keys() -> None:
    key = counter_key("rsmq", "user", "name:alice", b"salt")
    assert key.startswith("rsmq:ratelimit:user:") and "alice" not in key
    assert key != counter_key("rsmq", "user", "name:alice", b"other salt")
    assert "{" not in key  # one key per call: no hash tag needed on a cluster


def test_delay_schedule() -> None:
    limits = AuthLimits(window=60.0, user_free_failures=3, user_max_delay=2.0)
    cost = limits.failure_cost
    assert cost == 20_000
    assert [limits.delay(n * cost) for n in range(9)] == [0, 0, 0, 0, 0.25, 0.5, 1.0, 2.0, 2.0]
    assert limits.delay(4 * cost - 1) == 0.25  # partly drained still counts
    assert limits.failure_capacity == 7 * cost  # no more than needed for the longest delay
    assert AuthLimits(user_max_delay=0).delay(10**9) == 0


@pytest.mark.parametrize(
    ("raw", "deep"),
    [
        (b"[" * 9, True),
        (b"[" * 8 + b"]" * 8, False),
        (b'{"a": "' + b"[" * 20 + b'"}', False),
        (b'{"a": "\\"' + b"[" * 20 + b'"}', False),  # an escaped quote does not end the string
        (b'{"a": "\\\\"' + b", " + b"[" * 9 + b"}", True),  # an escaped backslash does
        (b"[]" * 50, False),
    ],
)
def test_json_depth(raw: bytes, deep: bool) -> None:
    assert json_depth_exceeds(raw, 8) is deep


async def test_shared_counters_on_a_cluster(cluster_url: str) -> None:
    """One key per call: counters spread over every master, no CROSSSLOT."""
    counters = SharedCounters(cluster_url, timeout=2.0)
    try:
        for i in range(30):
            key = counter_key("rsmq", "ip", f"10.0.0.{i}", b"")
            retries = [(await counters.step(key, 0, 10, 20, "take")).retry for _ in range(3)]
            assert retries == [0, 0, 10]
        assert counters.shared
    finally:
        await counters.aclose()


def _reference_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_reference_depth(v) for v in value), default=0)
    return 0


def test_json_depth_matches_the_parsed_depth() -> None:
    # Random documents, strings full of brackets, quotes and backslashes included.
    rng = random.Random(7)
    pieces = ["[", "]", "{", "}", '"', "\\", "a", "\u00e9"]

    def doc(depth: int) -> object:
        kind = rng.random()
        if depth == 0 or kind < 0.3:
            return "".join(rng.choice(pieces) for _ in range(rng.randrange(6)))
        if kind < 0.65:
            return [doc(depth - 1) for _ in range(rng.randrange(4))]
        return {f"k{i}[": doc(depth - 1) for i in range(rng.randrange(4))}

    for _ in range(2000):
        value = doc(rng.randrange(14))
        raw = json.dumps(value, ensure_ascii=rng.random() < 0.5).encode()
        for limit in (1, 3, 8):
            assert json_depth_exceeds(raw, limit) is (_reference_depth(value) > limit), raw


def test_json_depth_costs_less_than_parsing() -> None:
    # A megabyte of brackets: the check runs before json.loads on every API and auth body, in
    # the event loop. It took about as long as json.loads (a Python loop per bracket); now a
    # fraction of it. Compared with json.loads on the same machine, so a busy host does not
    # make it flaky.
    raw = b'{"messages": [' + b",".join([b"[[], {}]"] * 100_000) + b', "[\\"]"]}'
    assert len(raw) > 900_000

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    parse = best(lambda: json.loads(raw))
    check = best(lambda: json_depth_exceeds(raw, 8))
    assert check < parse / 4, (check, parse)  # was about as long as parsing, or longer

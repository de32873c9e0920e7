"""wsmq.protocol.ratelimit: token bucket with an explicit clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsmq.protocol.ratelimit import TokenBucket


def test_starts_full_and_allows_a_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert bucket.available(100.0) == 3.0  # capped at burst


def test_failed_take_consumes_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=2, now=0.0)
    assert not bucket.take(0.0, n=3)
    assert bucket.available(0.0) == 2.0
    assert bucket.take(0.0, n=2)


def test_clock_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=100.0)
    assert bucket.take(100.0)
    assert not bucket.take(50.0)
    assert not bucket.take(100.04)
    assert bucket.take(100.2)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_invalid_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=rate, burst=burst, now=0.0)


def test_repr() -> None:
    assert "rate=5.0" in repr(TokenBucket(rate=5, burst=1, now=0))


@settings(max_examples=300, deadline=None)
@given(
    st.floats(0.5, 1000),
    st.integers(1, 50),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_never_exceeds_rate_times_time_plus_burst(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst, now=0.0)
    now = 0.0
    taken = 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= burst + rate * now + 1e-9

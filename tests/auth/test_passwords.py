"""scrypt password hashes and the login rate limiter (pure)."""

from __future__ import annotations

import pytest

from wsmq.auth import AuthError, PasswordHasher, verify_password
from wsmq.auth.ratelimit import SlidingWindowLimiter
from wsmq.auth.routes import LoginLimiter

CHEAP = PasswordHasher(n=2**4)


def test_hash_format_and_verify() -> None:
    encoded = CHEAP.hash("pässword")
    assert encoded.startswith("$scrypt$ln=4,r=8,p=1$")
    assert verify_password("pässword", encoded)
    assert not verify_password("password", encoded)
    assert CHEAP.hash("pässword") != encoded  # random salt


@pytest.mark.parametrize(
    "encoded",
    [None, "", "plaintext", "$scrypt$ln=4,r=8,p=1$$", "$scrypt$ln=99,r=8,p=1$AAAA$AAAA"],
)
def test_junk_hashes_never_match(encoded: str | None) -> None:
    assert not verify_password("x", encoded, CHEAP)


def test_empty_and_huge_passwords() -> None:
    with pytest.raises(ValueError):
        CHEAP.hash("")
    with pytest.raises(ValueError):
        CHEAP.hash("x" * 2000)
    assert not verify_password("", CHEAP.hash("x"))


def test_default_cost_is_production_grade() -> None:
    assert PasswordHasher().n >= 2**15


def test_sliding_window() -> None:
    lim = SlidingWindowLimiter(3, 10.0)
    assert [lim.hit("k", t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert lim.hit("k", 3.0) == pytest.approx(7.0)  # the oldest hit leaves at t=10
    assert lim.hit("other", 3.0) == 0.0
    assert lim.hit("k", 10.0) == 0.0
    assert lim.hit("k", 10.5) > 0
    lim.reset("k")
    assert lim.hit("k", 10.5) == 0.0


def test_sliding_window_memory_is_bounded() -> None:
    lim = SlidingWindowLimiter(1, 60.0, max_keys=100)
    for i in range(1000):
        lim.hit(f"ip{i}", 0.0)
    assert len(lim._hits) == 100


def test_login_limiter_per_user_and_per_ip() -> None:
    now = [0.0]
    lim = LoginLimiter(per_user=2, per_ip=3, window=60.0, clock=lambda: now[0])
    lim.check("alice", "1.1.1.1")
    lim.check("alice", "2.2.2.2")
    with pytest.raises(AuthError) as info:
        lim.check("alice", "3.3.3.3")  # per user, from any address
    assert info.value.status == 429 and info.value.retry_after == pytest.approx(60.0)
    lim.check("bob", "1.1.1.1")
    lim.check("dave", "1.1.1.1")
    with pytest.raises(AuthError):
        lim.check("carol", "1.1.1.1")  # per address, for any name
    now[0] = 61.0
    lim.check("alice", "1.1.1.1")

"""scrypt password hashes (pure); the auth rate limits are tested in test_ratelimit.py."""

from __future__ import annotations

import pytest

from wsmq.auth import PasswordHasher, verify_password

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
